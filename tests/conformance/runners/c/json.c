/* See json.h. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char* s;
  const char* p;
  char* err;
  size_t errlen;
  int failed;
} parser;

static void fail(parser* ps, const char* what) {
  if (!ps->failed) {
    snprintf(ps->err, ps->errlen, "%s at offset %ld", what, (long)(ps->p - ps->s));
    ps->failed = 1;
  }
}

static json* alloc_value(jtype t) {
  json* v = (json*)calloc(1, sizeof(json));
  if (v) v->t = t;
  return v;
}

static void skip_ws(parser* ps) {
  while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static void grow_push(json* v, json* item, char* key) {
  if (v->n == 0 || (v->n >= 4 && (v->n & (v->n - 1)) == 0)) { /* full: capacities are 4, 8, 16, ... */
    size_t cap = v->n ? v->n * 2 : 4;
    v->items = (json**)realloc(v->items, cap * sizeof(json*));
    if (v->t == J_OBJ) v->keys = (char**)realloc(v->keys, cap * sizeof(char*));
  }
  v->items[v->n] = item;
  if (v->t == J_OBJ) v->keys[v->n] = key;
  v->n++;
}

static void put_utf8(char** out, size_t* len, size_t* cap, unsigned long cp) {
  unsigned char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (unsigned char)(0xC0 | (cp >> 6));
    b[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xE0 | (cp >> 12));
    b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  if (*len + n + 1 > *cap) {
    *cap = (*len + n + 1) * 2;
    *out = (char*)realloc(*out, *cap);
  }
  memcpy(*out + *len, b, n);
  *len += n;
}

static int hex4(parser* ps, unsigned long* out) {
  unsigned long v = 0;
  int i;
  for (i = 0; i < 4; ++i) {
    char c = ps->p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned long)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned long)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned long)(c - 'A' + 10);
    else {
      fail(ps, "bad \\u escape");
      return 0;
    }
  }
  ps->p += 4;
  *out = v;
  return 1;
}

static char* parse_string_raw(parser* ps, size_t* out_len) {
  size_t len = 0, cap = 16;
  char* out = (char*)malloc(cap);
  ps->p++; /* opening quote */
  for (;;) {
    char c = *ps->p;
    if (c == '\0') {
      fail(ps, "unterminated string");
      free(out);
      return NULL;
    }
    if (c == '"') {
      ps->p++;
      break;
    }
    if (c == '\\') {
      unsigned long cp = 0;
      ps->p++;
      switch (*ps->p) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
          ps->p++;
          if (!hex4(ps, &cp)) {
            free(out);
            return NULL;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && ps->p[0] == '\\' && ps->p[1] == 'u') {
            unsigned long lo = 0;
            ps->p += 2;
            if (!hex4(ps, &lo)) {
              free(out);
              return NULL;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(&out, &len, &cap, cp);
          continue;
        }
        default:
          fail(ps, "bad escape");
          free(out);
          return NULL;
      }
      ps->p++;
      put_utf8(&out, &len, &cap, cp);
      continue;
    }
    if (len + 2 > cap) {
      cap *= 2;
      out = (char*)realloc(out, cap);
    }
    out[len++] = c;
    ps->p++;
  }
  out[len] = '\0';
  *out_len = len;
  return out;
}

static json* parse_value(parser* ps, int depth);

static json* parse_number(parser* ps) {
  const char* start = ps->p;
  int is_int = 1;
  json* v;
  if (*ps->p == '-') ps->p++;
  while ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' || *ps->p == 'e' || *ps->p == 'E' || *ps->p == '+' ||
         *ps->p == '-') {
    if (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E') is_int = 0;
    ps->p++;
  }
  if (ps->p == start) {
    fail(ps, "unexpected character");
    return NULL;
  }
  v = alloc_value(J_NUM);
  v->num = strtod(start, NULL);
  if (is_int) {
    errno = 0;
    v->inum = strtoll(start, NULL, 10);
    v->is_int = errno == 0;
  }
  return v;
}

static json* parse_value(parser* ps, int depth) {
  json* v = NULL;
  if (depth > 64) {
    fail(ps, "nested too deep");
    return NULL;
  }
  skip_ws(ps);
  switch (*ps->p) {
    case '{': {
      v = alloc_value(J_OBJ);
      ps->p++;
      skip_ws(ps);
      if (*ps->p == '}') {
        ps->p++;
        return v;
      }
      for (;;) {
        size_t klen;
        char* key;
        json* item;
        skip_ws(ps);
        if (*ps->p != '"') {
          fail(ps, "expected a key");
          json_free(v);
          return NULL;
        }
        key = parse_string_raw(ps, &klen);
        if (!key) {
          json_free(v);
          return NULL;
        }
        skip_ws(ps);
        if (*ps->p != ':') {
          fail(ps, "expected ':'");
          free(key);
          json_free(v);
          return NULL;
        }
        ps->p++;
        item = parse_value(ps, depth + 1);
        if (!item) {
          free(key);
          json_free(v);
          return NULL;
        }
        grow_push(v, item, key);
        skip_ws(ps);
        if (*ps->p == ',') {
          ps->p++;
          continue;
        }
        if (*ps->p == '}') {
          ps->p++;
          return v;
        }
        fail(ps, "expected ',' or '}'");
        json_free(v);
        return NULL;
      }
    }
    case '[': {
      v = alloc_value(J_ARR);
      ps->p++;
      skip_ws(ps);
      if (*ps->p == ']') {
        ps->p++;
        return v;
      }
      for (;;) {
        json* item = parse_value(ps, depth + 1);
        if (!item) {
          json_free(v);
          return NULL;
        }
        grow_push(v, item, NULL);
        skip_ws(ps);
        if (*ps->p == ',') {
          ps->p++;
          continue;
        }
        if (*ps->p == ']') {
          ps->p++;
          return v;
        }
        fail(ps, "expected ',' or ']'");
        json_free(v);
        return NULL;
      }
    }
    case '"': {
      size_t len;
      char* s = parse_string_raw(ps, &len);
      if (!s) return NULL;
      v = alloc_value(J_STR);
      v->str = s;
      v->slen = len;
      return v;
    }
    case 't':
      if (strncmp(ps->p, "true", 4) == 0) {
        ps->p += 4;
        v = alloc_value(J_BOOL);
        v->b = 1;
        return v;
      }
      break;
    case 'f':
      if (strncmp(ps->p, "false", 5) == 0) {
        ps->p += 5;
        return alloc_value(J_BOOL);
      }
      break;
    case 'n':
      if (strncmp(ps->p, "null", 4) == 0) {
        ps->p += 4;
        return alloc_value(J_NULL);
      }
      break;
    default:
      return parse_number(ps);
  }
  fail(ps, "unexpected character");
  return NULL;
}

json* json_parse(const char* text, char* err, size_t errlen) {
  parser ps;
  json* v;
  ps.s = ps.p = text;
  ps.err = err;
  ps.errlen = errlen;
  ps.failed = 0;
  v = parse_value(&ps, 0);
  if (v) {
    skip_ws(&ps);
    if (*ps.p) {
      fail(&ps, "trailing characters");
      json_free(v);
      v = NULL;
    }
  }
  return v;
}

json* json_parse_file(const char* path, char* err, size_t errlen) {
  FILE* f = fopen(path, "rb");
  long size;
  char* text;
  json* v;
  if (!f) {
    snprintf(err, errlen, "cannot open %s", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = (char*)malloc((size_t)size + 1);
  if (fread(text, 1, (size_t)size, f) != (size_t)size) {
    snprintf(err, errlen, "cannot read %s", path);
    fclose(f);
    free(text);
    return NULL;
  }
  fclose(f);
  text[size] = '\0';
  v = json_parse(text, err, errlen);
  free(text);
  return v;
}

void json_free(json* v) {
  size_t i;
  if (!v) return;
  for (i = 0; i < v->n; ++i) {
    json_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  free(v);
}

const json* json_get(const json* v, const char* key) {
  size_t i;
  if (!v || v->t != J_OBJ) return NULL;
  for (i = 0; i < v->n; ++i)
    if (strcmp(v->keys[i], key) == 0) return v->items[i];
  return NULL;
}

json* json_new_null(void) { return alloc_value(J_NULL); }

json* json_new_int(long long x) {
  json* v = alloc_value(J_NUM);
  v->is_int = 1;
  v->inum = x;
  v->num = (double)x;
  return v;
}

json* json_new_num(double x) {
  json* v = alloc_value(J_NUM);
  v->num = x;
  if (x == (double)(long long)x && x > -9e15 && x < 9e15) {
    v->is_int = 1;
    v->inum = (long long)x;
  }
  return v;
}

json* json_new_str(const char* s) {
  json* v = alloc_value(J_STR);
  v->slen = strlen(s);
  v->str = (char*)malloc(v->slen + 1);
  memcpy(v->str, s, v->slen + 1);
  return v;
}

json* json_new_arr(void) { return alloc_value(J_ARR); }
json* json_new_obj(void) { return alloc_value(J_OBJ); }
void json_push(json* arr, json* item) { grow_push(arr, item, NULL); }

void json_set(json* obj, const char* key, json* value) {
  size_t n = strlen(key);
  char* k = (char*)malloc(n + 1);
  memcpy(k, key, n + 1);
  grow_push(obj, value, k);
}

int json_equal(const json* a, const json* b) {
  size_t i;
  if (!a || !b) return a == b;
  if (a->t != b->t) return 0;
  switch (a->t) {
    case J_NULL: return 1;
    case J_BOOL: return a->b == b->b;
    case J_NUM:
      if (a->is_int && b->is_int) return a->inum == b->inum;
      return a->num == b->num;
    case J_STR: return a->slen == b->slen && memcmp(a->str, b->str, a->slen) == 0;
    case J_ARR:
      if (a->n != b->n) return 0;
      for (i = 0; i < a->n; ++i)
        if (!json_equal(a->items[i], b->items[i])) return 0;
      return 1;
    case J_OBJ:
      if (a->n != b->n) return 0;
      for (i = 0; i < a->n; ++i)
        if (!json_equal(a->items[i], json_get(b, a->keys[i]))) return 0;
      return 1;
  }
  return 0;
}

static void append(char* buf, size_t cap, const char* s) {
  size_t n = strlen(buf);
  if (n + 1 >= cap) return;
  snprintf(buf + n, cap - n, "%s", s);
}

void json_dump(const json* v, char* buf, size_t cap) {
  char tmp[64];
  size_t i;
  if (cap == 0) return;
  if (!v) {
    append(buf, cap, "(absent)");
    return;
  }
  switch (v->t) {
    case J_NULL: append(buf, cap, "null"); break;
    case J_BOOL: append(buf, cap, v->b ? "true" : "false"); break;
    case J_NUM:
      if (v->is_int) snprintf(tmp, sizeof tmp, "%lld", v->inum);
      else snprintf(tmp, sizeof tmp, "%.9g", v->num);
      append(buf, cap, tmp);
      break;
    case J_STR:
      append(buf, cap, "\"");
      append(buf, cap, v->str);
      append(buf, cap, "\"");
      break;
    case J_ARR:
      append(buf, cap, "[");
      for (i = 0; i < v->n; ++i) {
        if (i) append(buf, cap, ", ");
        json_dump(v->items[i], buf, cap);
      }
      append(buf, cap, "]");
      break;
    case J_OBJ:
      append(buf, cap, "{");
      for (i = 0; i < v->n; ++i) {
        if (i) append(buf, cap, ", ");
        append(buf, cap, v->keys[i]);
        append(buf, cap, ": ");
        json_dump(v->items[i], buf, cap);
      }
      append(buf, cap, "}");
      break;
  }
}
