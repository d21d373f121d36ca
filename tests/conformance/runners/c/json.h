/* A small JSON reader for the conformance runner (C99). Numbers keep their text so int64 values survive
 * exactly; strings are decoded to UTF-8 (\uXXXX escapes included, surrogate pairs joined). */
#ifndef MLORA_CONFORMANCE_JSON_H_
#define MLORA_CONFORMANCE_JSON_H_

#include <stddef.h>
#include <stdint.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct json {
  jtype t;
  int b;             /* J_BOOL */
  double num;        /* J_NUM */
  int is_int;        /* J_NUM written without fraction or exponent */
  long long inum;    /* J_NUM when is_int */
  char* str;         /* J_STR: NUL-terminated UTF-8 (may contain NUL via \u0000; see slen) */
  size_t slen;       /* J_STR byte length */
  struct json** items; /* J_ARR / J_OBJ values */
  char** keys;       /* J_OBJ keys, in file order */
  size_t n;          /* J_ARR / J_OBJ count */
} json;

/* Parses text; returns NULL and writes a message into err on failure. */
json* json_parse(const char* text, char* err, size_t errlen);
/* Reads and parses a file. */
json* json_parse_file(const char* path, char* err, size_t errlen);
void json_free(json* v);
/* Member of an object, or NULL when absent (or v is not an object). */
const json* json_get(const json* v, const char* key);

/* Constructors for values the runner builds (results of calls). */
json* json_new_null(void);
json* json_new_int(long long v);
json* json_new_num(double v);
json* json_new_str(const char* s);
json* json_new_arr(void);
json* json_new_obj(void);
void json_push(json* arr, json* item);
void json_set(json* obj, const char* key, json* value);

/* Deep equality; numbers compare exactly (integers as integers). */
int json_equal(const json* a, const json* b);
/* Short text form for messages (truncated to cap). */
void json_dump(const json* v, char* buf, size_t cap);

#endif
