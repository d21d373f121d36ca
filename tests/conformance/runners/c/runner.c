/* Conformance runner in C: plays every scenario of tests/conformance/vectors over the raw C ABI.
 *
 * Usage: conformance_c VECTORS_DIR FIXTURES_DIR
 * Prints one line per failed step, a line per scenario, then exactly "N passed, N failed" (one step = one
 * check); exits 1 if any step failed. The vector schema is described in tests/conformance/README.md.
 *
 * C is the reference runner: every step, "raw" level included, goes straight to the ABI. Released handles
 * are passed as the very pointer that was released, which the ABI promises to recognise.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "multilora/multilora.h"

/* ---- variables ------------------------------------------------------------------------------------------ */

typedef enum {
  K_MODEL,
  K_MODEL_OPTIONS,
  K_ADAPTERS,
  K_ADAPTER,
  K_RUN_OPTIONS,
  K_TENSOR,
  K_GEN_PARAMS,
  K_GENERATOR,
  K_ENGINE_OPTIONS,
  K_ENGINE,
  K_REQUEST,
  K_VALUE
} kind_t;

typedef struct {
  char name[64];
  kind_t kind;
  void* ptr;
  int released;
  json* value; /* K_VALUE */
} var_t;

#define MAX_VARS 256
static var_t g_vars[MAX_VARS];
static int g_nvars;
static char g_fixtures[1024];
static json* g_reference; /* reference.json */

static var_t* find_var(const char* name) {
  int i;
  for (i = g_nvars - 1; i >= 0; --i)
    if (strcmp(g_vars[i].name, name) == 0) return &g_vars[i];
  return NULL;
}

static void release_handle(kind_t k, void* p) {
  switch (k) {
    case K_MODEL: mlora_model_release((mlora_model_t*)p); break;
    case K_MODEL_OPTIONS: mlora_model_options_release((mlora_model_options_t*)p); break;
    case K_ADAPTERS: mlora_adapters_release((mlora_adapters_t*)p); break;
    case K_ADAPTER: mlora_adapter_release((mlora_adapter_t*)p); break;
    case K_RUN_OPTIONS: mlora_run_options_release((mlora_run_options_t*)p); break;
    case K_TENSOR: mlora_tensor_release((mlora_tensor_t*)p); break;
    case K_GEN_PARAMS: mlora_generator_params_release((mlora_generator_params_t*)p); break;
    case K_GENERATOR: mlora_generator_release((mlora_generator_t*)p); break;
    case K_ENGINE_OPTIONS: mlora_engine_options_release((mlora_engine_options_t*)p); break;
    case K_ENGINE: mlora_engine_release((mlora_engine_t*)p); break;
    case K_REQUEST: mlora_request_release((mlora_request_t*)p); break;
    case K_VALUE: break;
  }
}

static void bind_handle(const char* name, kind_t kind, void* ptr) {
  var_t* v;
  if (g_nvars == MAX_VARS) {
    release_handle(kind, ptr);
    return;
  }
  v = &g_vars[g_nvars++];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  v->kind = kind;
  v->ptr = ptr;
}

static void bind_value(const char* name, json* value) {
  var_t* v;
  if (g_nvars == MAX_VARS) {
    json_free(value);
    return;
  }
  v = &g_vars[g_nvars++];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  v->kind = K_VALUE;
  v->value = value;
}

/* Releases what the scenario still holds, newest first (handles may go in any order; this is tidy). */
static void clear_vars(void) {
  int i;
  for (i = g_nvars - 1; i >= 0; --i) {
    if (g_vars[i].kind == K_VALUE) json_free(g_vars[i].value);
    else if (!g_vars[i].released) release_handle(g_vars[i].kind, g_vars[i].ptr);
  }
  g_nvars = 0;
}

/* ---- step context ------------------------------------------------------------------------------------- */

typedef struct {
  char error[1024];      /* the runner's own failure (bad vector, unbound variable, comparison) */
  mlora_status_t status; /* what the call returned */
  char message[2048];    /* mlora_last_error_message() read right after the call */
  int last_status_ok;    /* mlora_last_error_status() agreed with status */
  json* values;          /* result fields of the call */
  void* handle;          /* the handle a create/get call produced */
  kind_t handle_kind;
  /* model_run outputs */
  size_t n_outputs;
  char* output_names[16];
  mlora_tensor_t* outputs[16];
} ctx_t;

static void ctx_error(ctx_t* c, const char* fmt, const char* a) {
  if (!c->error[0]) snprintf(c->error, sizeof c->error, fmt, a);
}

/* Records the status of a call and, on failure, the thread's last error at once. */
static void took(ctx_t* c, mlora_status_t s) {
  c->status = s;
  c->message[0] = '\0';
  c->last_status_ok = 1;
  if (s != MLORA_STATUS_OK) {
    snprintf(c->message, sizeof c->message, "%s", mlora_last_error_message());
    c->last_status_ok = mlora_last_error_status() == s;
  }
}

/* ---- argument helpers ---------------------------------------------------------------------------------- */

static const json* arg(const json* step, const char* name) { return json_get(json_get(step, "args"), name); }

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Bytes of a {"utf8_hex": "..."} / "data_hex" string; *n receives the length; a NUL is appended. */
static char* from_hex(const char* hex, size_t* n) {
  size_t len = strlen(hex) / 2, i;
  char* out = (char*)malloc(len + 1);
  for (i = 0; i < len; ++i) out[i] = (char)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
  out[len] = '\0';
  if (n) *n = len;
  return out;
}

/* A string argument: JSON null -> NULL; "@fixtures/x" -> path; {"utf8_hex": ".."} -> raw bytes.
 * *ok is cleared for a malformed argument. Returns malloc'ed text (free it) or NULL. */
static char* str_arg(const json* v, int* ok) {
  if (!v || v->t == J_NULL) return NULL;
  if (v->t == J_STR) {
    if (strncmp(v->str, "@fixtures/", 10) == 0) {
      size_t n = strlen(g_fixtures) + strlen(v->str) + 2;
      char* p = (char*)malloc(n);
      snprintf(p, n, "%s/%s", g_fixtures, v->str + 10);
      return p;
    }
    {
      char* p = (char*)malloc(v->slen + 1);
      memcpy(p, v->str, v->slen + 1);
      return p;
    }
  }
  if (v->t == J_OBJ && json_get(v, "utf8_hex") && json_get(v, "utf8_hex")->t == J_STR)
    return from_hex(json_get(v, "utf8_hex")->str, NULL);
  *ok = 0;
  return NULL;
}

/* A handle argument: null -> NULL, "$v" -> the variable's pointer (released or not). */
static void* handle_arg(ctx_t* c, const json* v) {
  var_t* var;
  if (!v || v->t == J_NULL) return NULL;
  if (v->t != J_STR || v->str[0] != '$') {
    ctx_error(c, "handle argument must be null or \"$name\"", "");
    return NULL;
  }
  var = find_var(v->str + 1);
  if (!var || var->kind == K_VALUE) {
    ctx_error(c, "unbound handle variable %s", v->str);
    return NULL;
  }
  return var->ptr;
}

/* {"value_ref": name} -> reference.json's values[name] (NULL if missing); anything else as it is. */
static const json* value_ref(const json* v) {
  const json* name = v && v->t == J_OBJ ? json_get(v, "value_ref") : NULL;
  if (!name || name->t != J_STR) return v;
  return json_get(json_get(g_reference, "values"), name->str);
}

static long long int_arg(const json* v, long long dflt) {
  v = value_ref(v);
  if (!v || v->t != J_NUM) return dflt;
  return v->is_int ? v->inum : (long long)v->num;
}

static const struct {
  const char* name;
  int code;
  size_t size;
} kDtypes[] = {{"float32", MLORA_DTYPE_FLOAT32, 4}, {"uint8", MLORA_DTYPE_UINT8, 1},   {"int8", MLORA_DTYPE_INT8, 1},
               {"int32", MLORA_DTYPE_INT32, 4},     {"int64", MLORA_DTYPE_INT64, 8},   {"float16", MLORA_DTYPE_FLOAT16, 2},
               {"float64", MLORA_DTYPE_FLOAT64, 8}, {"bool", MLORA_DTYPE_BOOL, 1}};

static size_t dtype_size(int code) {
  size_t i;
  for (i = 0; i < sizeof kDtypes / sizeof kDtypes[0]; ++i)
    if (kDtypes[i].code == code) return kDtypes[i].size;
  return 0;
}

static int flags_arg(const json* v) {
  int flags = 0;
  size_t i;
  if (!v) return MLORA_LOAD_DEFAULT;
  if (v->t == J_NUM) return (int)int_arg(v, 0);
  for (i = 0; v->t == J_ARR && i < v->n; ++i) {
    const char* f = v->items[i]->str;
    if (!f) continue;
    if (strcmp(f, "MLORA_LOAD_REPLACE") == 0) flags |= MLORA_LOAD_REPLACE;
    if (strcmp(f, "MLORA_LOAD_IGNORE_MODEL_VERSION") == 0) flags |= MLORA_LOAD_IGNORE_MODEL_VERSION;
    if (strcmp(f, "MLORA_LOAD_COPY") == 0) flags |= MLORA_LOAD_COPY;
  }
  return flags;
}

/* Encodes a number into one element of the given dtype. */
static void put_elem(unsigned char* dst, int code, const json* x) {
  double d = x->num;
  long long i = x->is_int ? x->inum : (long long)x->num;
  switch (code) {
    case MLORA_DTYPE_FLOAT32: {
      float f = (float)d;
      memcpy(dst, &f, 4);
      break;
    }
    case MLORA_DTYPE_FLOAT64: memcpy(dst, &d, 8); break;
    case MLORA_DTYPE_INT64: memcpy(dst, &i, 8); break;
    case MLORA_DTYPE_INT32: {
      int32_t v = (int32_t)i;
      memcpy(dst, &v, 4);
      break;
    }
    default: dst[0] = (unsigned char)i; break;
  }
}

typedef struct {
  int dtype;
  int64_t shape[8];
  size_t ndim;
  unsigned char* data;
  size_t bytes;
} tensor_spec;

/* Reads a tensor spec: {"ref": name} | {"dtype", "shape", "data" | "fill" | "data_hex"}. */
static int read_spec(ctx_t* c, const json* v, tensor_spec* t) {
  const json *dt, *shape, *data, *fill, *hex;
  size_t i, count = 1;
  memset(t, 0, sizeof *t);
  if (!v || v->t != J_OBJ) {
    ctx_error(c, "tensor spec must be an object", "");
    return 0;
  }
  if (json_get(v, "ref")) {
    const json* r = json_get(json_get(g_reference, "tensors"), json_get(v, "ref")->str);
    if (!r) {
      ctx_error(c, "reference tensor %s not in reference.json", json_get(v, "ref")->str);
      return 0;
    }
    v = r;
  }
  dt = json_get(v, "dtype");
  shape = json_get(v, "shape");
  if (!dt || !shape || shape->t != J_ARR || shape->n > 8) {
    ctx_error(c, "tensor spec needs dtype and shape", "");
    return 0;
  }
  if (dt->t == J_NUM) {
    t->dtype = (int)int_arg(dt, 0);
  } else {
    for (i = 0; i < sizeof kDtypes / sizeof kDtypes[0]; ++i)
      if (strcmp(dt->str, kDtypes[i].name) == 0) t->dtype = kDtypes[i].code;
    if (!t->dtype) {
      ctx_error(c, "unknown dtype name %s", dt->str);
      return 0;
    }
  }
  t->ndim = shape->n;
  for (i = 0; i < shape->n; ++i) {
    t->shape[i] = int_arg(shape->items[i], 0);
    count *= t->shape[i] > 0 ? (size_t)t->shape[i] : 0;
  }
  data = json_get(v, "data");
  fill = json_get(v, "fill");
  hex = json_get(v, "data_hex");
  if (hex) {
    t->data = (unsigned char*)from_hex(hex->str, &t->bytes);
    return 1;
  }
  {
    size_t es = dtype_size(t->dtype);
    size_t n = data ? data->n : count;
    t->bytes = n * es;
    t->data = (unsigned char*)calloc(t->bytes ? t->bytes : 1, 1);
    for (i = 0; i < n; ++i) put_elem(t->data + i * es, t->dtype, data ? data->items[i] : fill);
  }
  return 1;
}

/* Creates a tensor from a spec or looks up "$var". *temp is set when the caller must release it. */
static mlora_tensor_t* tensor_arg(ctx_t* c, const json* v, int* temp) {
  tensor_spec s;
  mlora_tensor_t* t = NULL;
  mlora_status_t st;
  *temp = 0;
  if (v && v->t == J_STR) return (mlora_tensor_t*)handle_arg(c, v);
  if (!read_spec(c, v, &s)) return NULL;
  st = mlora_tensor_create(s.dtype, s.shape, s.ndim, s.data, s.bytes, &t);
  free(s.data);
  if (st != MLORA_STATUS_OK) {
    ctx_error(c, "could not create an input tensor: %s", mlora_last_error_message());
    return NULL;
  }
  *temp = 1;
  return t;
}

/* model_{input,output,lora}_name; capacity absent: the natural way (grow until it fits). */

static mlora_status_t call_model_name(int which, const void* m, size_t index, char* buf, size_t cap, size_t* len) {
  if (which == 0) return mlora_model_input_name((const mlora_model_t*)m, index, buf, cap, len);
  if (which == 1) return mlora_model_output_name((const mlora_model_t*)m, index, buf, cap, len);
  return mlora_model_lora_name((const mlora_model_t*)m, index, buf, cap, len);
}

static void do_name(ctx_t* c, int which, const json* step) {
  const void* m = handle_arg(c, arg(step, "model"));
  size_t index = (size_t)int_arg(arg(step, "index"), 0);
  long long cap = int_arg(arg(step, "capacity"), -1);
  size_t len = 0;
  char* buf;
  if (c->error[0]) return;
  if (cap >= 0) {
    buf = (char*)calloc((size_t)cap + 1, 1);
    took(c, call_model_name(which, m, index, cap ? buf : NULL, (size_t)cap, &len));
  } else {
    size_t size = 4;
    buf = (char*)calloc(size, 1);
    for (;;) {
      took(c, call_model_name(which, m, index, buf, size, &len));
      if (c->status != MLORA_STATUS_BUFFER_TOO_SMALL || len <= size) break;
      size = len;
      buf = (char*)realloc(buf, size);
    }
  }
  if (c->status == MLORA_STATUS_OK) json_set(c->values, "name", json_new_str(buf));
  if (c->status == MLORA_STATUS_OK || c->status == MLORA_STATUS_BUFFER_TOO_SMALL)
    json_set(c->values, "len", json_new_int((long long)len));
  free(buf);
}

static void do_names(ctx_t* c, const json* step) {
  const mlora_adapters_t* a = (const mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
  long long cap = int_arg(arg(step, "capacity"), -1);
  size_t len = 0, count = 0, size;
  char* buf;
  if (c->error[0]) return;
  if (cap >= 0) {
    size = (size_t)cap;
    buf = (char*)calloc(size + 1, 1);
    took(c, mlora_adapters_names(a, size ? buf : NULL, size, &len, &count));
  } else {
    size = 0;
    buf = (char*)calloc(1, 1);
    for (;;) {
      took(c, mlora_adapters_names(a, size ? buf : NULL, size, &len, &count));
      if (c->status != MLORA_STATUS_BUFFER_TOO_SMALL || len <= size) break;
      size = len;
      buf = (char*)realloc(buf, size);
    }
  }
  if (c->status == MLORA_STATUS_OK) {
    json* names = json_new_arr();
    size_t off = 0, i;
    for (i = 0; i < count && off < len; ++i) {
      json_push(names, json_new_str(buf + off));
      off += strlen(buf + off) + 1;
    }
    json_set(c->values, "names", names);
    json_set(c->values, "count", json_new_int((long long)count));
  }
  if (c->status == MLORA_STATUS_OK || c->status == MLORA_STATUS_BUFFER_TOO_SMALL)
    json_set(c->values, "len", json_new_int((long long)len));
  free(buf);
}

/* Builds the names array of a set_active_adapters step (which = 0 run options, 1 generator params). */
static void do_set_active(ctx_t* c, const json* step, int which) {
  void* o = handle_arg(c, arg(step, which ? "params" : "options"));
  const mlora_adapters_t* a = (const mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
  const json* names = arg(step, "names");
  const json* weights = arg(step, "weights");
  size_t n = names ? names->n : 0, i;
  char** cnames = (char**)calloc(n ? n : 1, sizeof(char*));
  float* w = (float*)calloc(n ? n : 1, sizeof(float));
  int ok = 1;
  for (i = 0; i < n; ++i) cnames[i] = str_arg(names->items[i], &ok);
  for (i = 0; weights && i < weights->n && i < n; ++i) w[i] = (float)weights->items[i]->num;
  if (!ok) ctx_error(c, "bad adapter name argument", "");
  if (!c->error[0] && which == 0)
    took(c, mlora_run_options_set_active_adapters((mlora_run_options_t*)o, a, (const char* const*)cnames,
                                                  weights ? w : NULL, n));
  if (!c->error[0] && which == 1)
    took(c, mlora_generator_params_set_active_adapters((mlora_generator_params_t*)o, a, (const char* const*)cnames,
                                                       weights ? w : NULL, n));
  for (i = 0; i < n; ++i) free(cnames[i]);
  free(cnames);
  free(w);
}

/* *_set_active_adapters_per_row: "rows" (lists of names) and optional "weights" (lists of numbers) flattened
 * row by row into names/weights + row_counts. The receiver is the "options" (which = 0, run options),
 * "params" (1, generator params) or "generator" (2) argument. */
static void do_set_per_row(ctx_t* c, const json* step, int which) {
  void* o = handle_arg(c, arg(step, which == 0 ? "options" : which == 1 ? "params" : "generator"));
  const mlora_adapters_t* a = (const mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
  const json* rows = arg(step, "rows");
  const json* weights = arg(step, "weights");
  size_t batch = rows ? rows->n : 0, total = 0, i, j, k = 0;
  for (i = 0; i < batch; ++i) total += rows->items[i]->n;
  char** cnames = (char**)calloc(total ? total : 1, sizeof(char*));
  float* w = (float*)calloc(total ? total : 1, sizeof(float));
  size_t* counts = (size_t*)calloc(batch ? batch : 1, sizeof(size_t));
  int ok = 1;
  for (i = 0; i < batch; ++i) {
    const json* row = rows->items[i];
    const json* wrow = weights && i < weights->n ? weights->items[i] : NULL;
    counts[i] = row->n;
    for (j = 0; j < row->n; ++j, ++k) {
      cnames[k] = str_arg(row->items[j], &ok);
      w[k] = wrow && j < wrow->n ? (float)wrow->items[j]->num : 1.0f;
    }
  }
  if (!ok) ctx_error(c, "bad adapter name argument", "");
  if (!c->error[0]) {
    const char* const* n = (const char* const*)cnames;
    const float* wp = weights ? w : NULL;
    if (which == 0)
      took(c, mlora_run_options_set_active_adapters_per_row((mlora_run_options_t*)o, a, n, wp, counts, batch));
    else if (which == 1)
      took(c, mlora_generator_params_set_active_adapters_per_row((mlora_generator_params_t*)o, a, n, wp, counts,
                                                                 batch));
    else
      took(c, mlora_generator_set_active_adapters_per_row((mlora_generator_t*)o, a, n, wp, counts, batch));
  }
  for (i = 0; i < total; ++i) free(cnames[i]);
  free(cnames);
  free(w);
  free(counts);
}

/* generator_get_sequence / generator_get_next_tokens; capacity absent: grow until it fits. */
static mlora_status_t call_tokens(int which, const mlora_generator_t* g, size_t index, int32_t* buf, size_t cap,
                                  size_t* len) {
  if (which == 0) return mlora_generator_get_sequence(g, index, buf, cap, len);
  return mlora_generator_get_next_tokens(g, buf, cap, len);
}

static void do_tokens(ctx_t* c, int which, const json* step) {
  const mlora_generator_t* g = (const mlora_generator_t*)handle_arg(c, arg(step, "generator"));
  size_t index = (size_t)int_arg(arg(step, "index"), 0);
  long long cap = int_arg(arg(step, "capacity"), -1);
  size_t len = 0, size, i;
  int32_t* buf;
  if (c->error[0]) return;
  if (cap >= 0) {
    size = (size_t)cap;
    buf = (int32_t*)calloc(size + 1, sizeof(int32_t));
    took(c, call_tokens(which, g, index, size ? buf : NULL, size, &len));
  } else {
    size = 4;
    buf = (int32_t*)calloc(size, sizeof(int32_t));
    for (;;) {
      took(c, call_tokens(which, g, index, buf, size, &len));
      if (c->status != MLORA_STATUS_BUFFER_TOO_SMALL || len <= size) break;
      size = len;
      buf = (int32_t*)realloc(buf, size * sizeof(int32_t));
    }
  }
  if (c->status == MLORA_STATUS_OK) {
    json* a = json_new_arr();
    for (i = 0; i < len && i < size; ++i) json_push(a, json_new_int(buf[i]));
    json_set(c->values, "tokens", a);
  }
  if (c->status == MLORA_STATUS_OK || c->status == MLORA_STATUS_BUFFER_TOO_SMALL)
    json_set(c->values, "len", json_new_int((long long)len));
  free(buf);
}

/* generator_append_tokens: tokens is a list of ids or {"value_ref": name}. */
static void do_append(ctx_t* c, const json* step) {
  mlora_generator_t* g = (mlora_generator_t*)handle_arg(c, arg(step, "generator"));
  const json* tokens = value_ref(arg(step, "tokens"));
  size_t n, i;
  int32_t* ids;
  if (!tokens || tokens->t != J_ARR) {
    ctx_error(c, "tokens must be a list of token ids or a value_ref", "");
    return;
  }
  n = tokens->n;
  ids = (int32_t*)calloc(n ? n : 1, sizeof(int32_t));
  for (i = 0; i < n; ++i) ids[i] = (int32_t)int_arg(tokens->items[i], 0);
  if (!c->error[0]) took(c, mlora_generator_append_tokens(g, ids, n));
  free(ids);
}

/* generator_append_token_sequences: "sequences", a list of prompts (each a list of ids or a value_ref),
 * flattened with one length per sequence. */
static void do_append_sequences(ctx_t* c, const json* step) {
  mlora_generator_t* g = (mlora_generator_t*)handle_arg(c, arg(step, "generator"));
  const json* seqs = arg(step, "sequences");
  size_t batch, total = 0, i, j, k = 0;
  int32_t* ids;
  size_t* lengths;
  if (!seqs || seqs->t != J_ARR) {
    ctx_error(c, "sequences must be a list of token lists", "");
    return;
  }
  batch = seqs->n;
  for (i = 0; i < batch; ++i) {
    const json* s = value_ref(seqs->items[i]);
    if (!s || s->t != J_ARR) {
      ctx_error(c, "each sequence must be a list of token ids or a value_ref", "");
      return;
    }
    total += s->n;
  }
  ids = (int32_t*)calloc(total ? total : 1, sizeof(int32_t));
  lengths = (size_t*)calloc(batch ? batch : 1, sizeof(size_t));
  for (i = 0; i < batch; ++i) {
    const json* s = value_ref(seqs->items[i]);
    lengths[i] = s->n;
    for (j = 0; j < s->n; ++j) ids[k++] = (int32_t)int_arg(s->items[j], 0);
  }
  if (!c->error[0]) took(c, mlora_generator_append_token_sequences(g, ids, lengths, batch));
  free(ids);
  free(lengths);
}

/* Binding-level generate_until_done: generate_next_token until is_done (at most max_steps, default 4096). */
static void do_until_done(ctx_t* c, const json* step) {
  mlora_generator_t* g = (mlora_generator_t*)handle_arg(c, arg(step, "generator"));
  long long max_steps = int_arg(arg(step, "max_steps"), 4096), steps = 0;
  int32_t done = 0;
  if (c->error[0]) return;
  for (;;) {
    took(c, mlora_generator_is_done(g, &done));
    if (c->status != MLORA_STATUS_OK || done) break;
    if (steps == max_steps) {
      ctx_error(c, "not done after max_steps steps", "");
      return;
    }
    took(c, mlora_generator_generate_next_token(g));
    if (c->status != MLORA_STATUS_OK) break;
    ++steps;
  }
  if (c->status == MLORA_STATUS_OK) json_set(c->values, "steps", json_new_int(steps));
}

static void do_run(ctx_t* c, const json* step) {
  const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
  const mlora_run_options_t* o = (const mlora_run_options_t*)handle_arg(c, arg(step, "options"));
  const json* inputs = arg(step, "inputs");
  const json* outs = arg(step, "output_names");
  size_t nin = inputs ? inputs->n : 0, nout = outs ? outs->n : 0, i;
  const char* in_names[16];
  const mlora_tensor_t* in_tensors[16];
  int temps[16];
  const char* out_names[16];
  mlora_tensor_t* results[16];
  size_t n_results = nout;
  memset(results, 0, sizeof results);
  memset(temps, 0, sizeof temps);
  if (nin > 16 || nout > 16) {
    ctx_error(c, "too many inputs/outputs for the runner", "");
    return;
  }
  for (i = 0; i < nin; ++i) {
    in_names[i] = inputs->keys[i];
    in_tensors[i] = tensor_arg(c, inputs->items[i], &temps[i]);
  }
  for (i = 0; i < nout; ++i) out_names[i] = outs->items[i]->str;
  if (nout == 0 && m) {
    /* every output, in order: the names come from the model */
    size_t count = 0;
    if (mlora_model_output_count(m, &count) == MLORA_STATUS_OK) n_results = count < 16 ? count : 16;
  }
  if (!c->error[0]) took(c, mlora_model_run(m, o, in_names, in_tensors, nin, out_names, nout, results));
  for (i = 0; i < nin; ++i)
    if (temps[i]) mlora_tensor_release((mlora_tensor_t*)in_tensors[i]);
  if (c->status != MLORA_STATUS_OK || c->error[0]) {
    for (i = 0; i < 16; ++i)
      if (results[i]) ctx_error(c, "a failed run wrote an output slot", "");
    return;
  }
  for (i = 0; i < n_results; ++i) {
    char name[512] = "";
    size_t len = 0;
    if (nout) snprintf(name, sizeof name, "%s", out_names[i]);
    else mlora_model_output_name(m, i, name, sizeof name, &len);
    c->output_names[c->n_outputs] = strdup(name);
    c->outputs[c->n_outputs++] = results[i];
  }
}

/* ---- engine ---------------------------------------------------------------------------------------------- */

/* engine_submit: tokens is a list of ids or {"value_ref": name}. */
static void do_submit(ctx_t* c, const json* step) {
  mlora_engine_t* e = (mlora_engine_t*)handle_arg(c, arg(step, "engine"));
  const mlora_generator_params_t* p = (const mlora_generator_params_t*)handle_arg(c, arg(step, "params"));
  const json* tokens = value_ref(arg(step, "tokens"));
  mlora_request_t* r = NULL;
  size_t n, i;
  int32_t* ids;
  if (!tokens || tokens->t != J_ARR) {
    ctx_error(c, "tokens must be a list of token ids or a value_ref", "");
    return;
  }
  n = tokens->n;
  ids = (int32_t*)calloc(n ? n : 1, sizeof(int32_t));
  for (i = 0; i < n; ++i) ids[i] = (int32_t)int_arg(tokens->items[i], 0);
  if (!c->error[0]) took(c, mlora_engine_submit(e, p, ids, n, &r));
  free(ids);
  c->handle = r;
  c->handle_kind = K_REQUEST;
}

/* Binding-level engine_run_until_done: engine_step until it reports no work (at most max_steps). */
static void do_engine_until_done(ctx_t* c, const json* step) {
  mlora_engine_t* e = (mlora_engine_t*)handle_arg(c, arg(step, "engine"));
  long long max_steps = int_arg(arg(step, "max_steps"), 4096), steps = 0;
  int32_t more = 1;
  if (c->error[0]) return;
  while (more) {
    if (steps == max_steps) {
      ctx_error(c, "work left after max_steps steps", "");
      return;
    }
    took(c, mlora_engine_step(e, &more));
    if (c->status != MLORA_STATUS_OK) return;
    ++steps;
  }
  json_set(c->values, "steps", json_new_int(steps));
}

/* request_read (one call: capacity, timeout_ms) and binding-level request_read_all (blocking reads until done). */
static void do_request_read(ctx_t* c, const json* step, int all) {
  mlora_request_t* r = (mlora_request_t*)handle_arg(c, arg(step, "request"));
  size_t cap = (size_t)int_arg(arg(step, "capacity"), 256), n = 0, total = 0, i;
  int32_t timeout = (int32_t)int_arg(arg(step, "timeout_ms"), all ? -1 : 0), done = 0;
  int32_t* buf = (int32_t*)calloc(all ? 4096 : (cap ? cap : 1), sizeof(int32_t));
  json* a;
  if (c->error[0]) {
    free(buf);
    return;
  }
  if (all) {
    int tries;
    for (tries = 0; tries < 100000 && !done && total < 4096; ++tries) {
      took(c, mlora_request_read(r, buf + total, 4096 - total, -1, &n, &done));
      if (c->status != MLORA_STATUS_OK) break;
      total += n;
    }
  } else {
    took(c, mlora_request_read(r, cap ? buf : NULL, cap, timeout, &n, &done));
    total = n;
  }
  if (c->status == MLORA_STATUS_OK) {
    a = json_new_arr();
    for (i = 0; i < total; ++i) json_push(a, json_new_int(buf[i]));
    json_set(c->values, "tokens", a);
    json_set(c->values, "count", json_new_int((long long)total));
    json_set(c->values, "done", json_new_int(done));
  }
  free(buf);
}

/* ---- the calls ------------------------------------------------------------------------------------------- */

static void execute(ctx_t* c, const json* step) {
  const char* call = json_get(step, "call") ? json_get(step, "call")->str : "";
  int ok = 1;
  c->status = MLORA_STATUS_OK;
  c->last_status_ok = 1;

  if (strcmp(call, "check_binding_abi") == 0) {
    long long expected = int_arg(arg(step, "expected"), MLORA_ABI_VERSION);
    int32_t lib = mlora_abi_version();
    c->status = MLORA_STATUS_OK;
    if (lib != expected) {
      c->status = MLORA_STATUS_VERSION_MISMATCH;
      snprintf(c->message, sizeof c->message, "multilora ABI mismatch: the library has ABI version %d, this binding "
               "was built for %lld", lib, expected);
    }
  } else if (strcmp(call, "version_string") == 0) {
    json_set(c->values, "value", json_new_str(mlora_version_string()));
  } else if (strcmp(call, "status_name") == 0) {
    json_set(c->values, "value", json_new_str(mlora_status_name((mlora_status_t)int_arg(arg(step, "status"), 0))));
  } else if (strcmp(call, "dtype_name") == 0) {
    json_set(c->values, "value", json_new_str(mlora_dtype_name((mlora_dtype_t)int_arg(arg(step, "dtype"), 0))));
  } else if (strcmp(call, "dtype_size") == 0) {
    size_t size = 0;
    took(c, mlora_dtype_size((mlora_dtype_t)int_arg(arg(step, "dtype"), 0), &size));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "value", json_new_int((long long)size));
  } else if (strcmp(call, "model_create") == 0) {
    char* path = str_arg(arg(step, "path"), &ok);
    const mlora_model_options_t* mo = (const mlora_model_options_t*)handle_arg(c, arg(step, "options"));
    mlora_model_t* m = NULL;
    if (!c->error[0]) took(c, mlora_model_create(path, mo, &m));
    c->handle = m;
    c->handle_kind = K_MODEL;
    free(path);
  } else if (strcmp(call, "model_release") == 0) {
    mlora_model_release((mlora_model_t*)handle_arg(c, arg(step, "model")));
  } else if (strcmp(call, "model_options_create") == 0) {
    mlora_model_options_t* mo = NULL;
    took(c, mlora_model_options_create(&mo));
    c->handle = mo;
    c->handle_kind = K_MODEL_OPTIONS;
  } else if (strcmp(call, "model_options_release") == 0) {
    mlora_model_options_release((mlora_model_options_t*)handle_arg(c, arg(step, "options")));
  } else if (strcmp(call, "model_options_set_batch_slots") == 0) {
    mlora_model_options_t* mo = (mlora_model_options_t*)handle_arg(c, arg(step, "options"));
    long long slots = int_arg(arg(step, "slots"), -1);
    if (slots < 0) ctx_error(c, "slots must be a count", "");
    if (!c->error[0]) took(c, mlora_model_options_set_batch_slots(mo, (size_t)slots));
  } else if (strcmp(call, "model_batch_slots") == 0) {
    const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
    size_t slots = 0, resident = 0;
    if (!c->error[0]) took(c, mlora_model_batch_slots(m, &slots, &resident));
    if (c->status == MLORA_STATUS_OK) {
      json_set(c->values, "slots", json_new_int((long long)slots));
      json_set(c->values, "resident", json_new_int((long long)resident));
    }
  } else if (strcmp(call, "model_input_count") == 0 || strcmp(call, "model_output_count") == 0 ||
             strcmp(call, "model_lora_count") == 0) {
    const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
    size_t n = 0;
    if (call[6] == 'i') took(c, mlora_model_input_count(m, &n));
    else if (call[6] == 'o') took(c, mlora_model_output_count(m, &n));
    else took(c, mlora_model_lora_count(m, &n));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "count", json_new_int((long long)n));
  } else if (strcmp(call, "model_input_name") == 0) {
    do_name(c, 0, step);
  } else if (strcmp(call, "model_output_name") == 0) {
    do_name(c, 1, step);
  } else if (strcmp(call, "model_lora_name") == 0) {
    do_name(c, 2, step);
  } else if (strcmp(call, "model_run") == 0) {
    do_run(c, step);
  } else if (strcmp(call, "tensor_create") == 0) {
    tensor_spec s;
    mlora_tensor_t* t = NULL;
    if (read_spec(c, arg(step, "tensor"), &s)) {
      took(c, mlora_tensor_create(s.dtype, s.shape, s.ndim, s.data, s.bytes, &t));
      c->handle = t;
      c->handle_kind = K_TENSOR;
      free(s.data);
    }
  } else if (strcmp(call, "tensor_release") == 0) {
    mlora_tensor_release((mlora_tensor_t*)handle_arg(c, arg(step, "tensor")));
  } else if (strcmp(call, "tensor_dtype") == 0) {
    mlora_dtype_t d = 0;
    took(c, mlora_tensor_dtype((const mlora_tensor_t*)handle_arg(c, arg(step, "tensor")), &d));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "dtype", json_new_int(d));
  } else if (strcmp(call, "tensor_shape") == 0) {
    const mlora_tensor_t* t = (const mlora_tensor_t*)handle_arg(c, arg(step, "tensor"));
    long long cap = int_arg(arg(step, "capacity"), 8);
    int64_t shape[8];
    size_t ndim = 0, i;
    took(c, mlora_tensor_shape(t, shape, (size_t)cap, &ndim));
    if (c->status == MLORA_STATUS_OK) {
      json* a = json_new_arr();
      for (i = 0; i < ndim && i < 8; ++i) json_push(a, json_new_int(shape[i]));
      json_set(c->values, "shape", a);
    }
    if (c->status == MLORA_STATUS_OK || c->status == MLORA_STATUS_BUFFER_TOO_SMALL)
      json_set(c->values, "ndim", json_new_int((long long)ndim));
  } else if (strcmp(call, "tensor_data") == 0) {
    const mlora_tensor_t* t = (const mlora_tensor_t*)handle_arg(c, arg(step, "tensor"));
    const void* data = NULL;
    size_t bytes = 0, i;
    mlora_dtype_t d = 0;
    took(c, mlora_tensor_data(t, &data, &bytes));
    if (c->status == MLORA_STATUS_OK && mlora_tensor_dtype(t, &d) == MLORA_STATUS_OK) {
      json* a = json_new_arr();
      size_t es = dtype_size(d);
      for (i = 0; es && i < bytes / es; ++i) {
        const unsigned char* p = (const unsigned char*)data + i * es;
        if (d == MLORA_DTYPE_FLOAT32) {
          float f;
          memcpy(&f, p, 4);
          json_push(a, json_new_num(f));
        } else if (d == MLORA_DTYPE_INT64) {
          long long v;
          memcpy(&v, p, 8);
          json_push(a, json_new_int(v));
        } else if (d == MLORA_DTYPE_INT32) {
          int32_t v;
          memcpy(&v, p, 4);
          json_push(a, json_new_int(v));
        } else {
          json_push(a, json_new_null());
        }
      }
      json_set(c->values, "data", a);
      json_set(c->values, "bytes", json_new_int((long long)bytes));
    }
  } else if (strcmp(call, "adapters_create") == 0) {
    mlora_adapters_t* a = NULL;
    took(c, mlora_adapters_create((const mlora_model_t*)handle_arg(c, arg(step, "model")), &a));
    c->handle = a;
    c->handle_kind = K_ADAPTERS;
  } else if (strcmp(call, "adapters_release") == 0) {
    mlora_adapters_release((mlora_adapters_t*)handle_arg(c, arg(step, "adapters")));
  } else if (strcmp(call, "adapters_load") == 0) {
    mlora_adapters_t* a = (mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
    char* path = str_arg(arg(step, "path"), &ok);
    char* name = str_arg(arg(step, "name"), &ok);
    if (!c->error[0]) took(c, mlora_adapters_load(a, path, name, flags_arg(arg(step, "flags"))));
    free(path);
    free(name);
  } else if (strcmp(call, "adapters_load_from_memory") == 0) {
    mlora_adapters_t* a = (mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
    char* path = str_arg(arg(step, "data"), &ok);
    char* name = str_arg(arg(step, "name"), &ok);
    FILE* f = path ? fopen(path, "rb") : NULL;
    if (!f) {
      ctx_error(c, "cannot read %s", path ? path : "(null)");
    } else {
      long size;
      unsigned char* bytes;
      fseek(f, 0, SEEK_END);
      size = ftell(f);
      fseek(f, 0, SEEK_SET);
      bytes = (unsigned char*)malloc((size_t)size + 1);
      if (fread(bytes, 1, (size_t)size, f) == (size_t)size)
        took(c, mlora_adapters_load_from_memory(a, bytes, (size_t)size, name, flags_arg(arg(step, "flags"))));
      else
        ctx_error(c, "cannot read %s", path);
      free(bytes);
      fclose(f);
    }
    free(path);
    free(name);
  } else if (strcmp(call, "adapters_unload") == 0) {
    mlora_adapters_t* a = (mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
    char* name = str_arg(arg(step, "name"), &ok);
    if (!c->error[0]) took(c, mlora_adapters_unload(a, name));
    free(name);
  } else if (strcmp(call, "adapters_names") == 0) {
    do_names(c, step);
  } else if (strcmp(call, "adapters_get") == 0) {
    const mlora_adapters_t* a = (const mlora_adapters_t*)handle_arg(c, arg(step, "adapters"));
    char* name = str_arg(arg(step, "name"), &ok);
    mlora_adapter_t* ad = NULL;
    if (!c->error[0]) took(c, mlora_adapters_get(a, name, &ad));
    c->handle = ad;
    c->handle_kind = K_ADAPTER;
    free(name);
  } else if (strcmp(call, "adapter_open") == 0) {
    char* path = str_arg(arg(step, "path"), &ok);
    mlora_adapter_t* ad = NULL;
    took(c, mlora_adapter_open(path, &ad));
    c->handle = ad;
    c->handle_kind = K_ADAPTER;
    free(path);
  } else if (strcmp(call, "adapter_release") == 0) {
    mlora_adapter_release((mlora_adapter_t*)handle_arg(c, arg(step, "adapter")));
  } else if (strcmp(call, "adapter_rank") == 0) {
    int64_t r = 0;
    took(c, mlora_adapter_rank((const mlora_adapter_t*)handle_arg(c, arg(step, "adapter")), &r));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "rank", json_new_int(r));
  } else if (strcmp(call, "adapter_param_count") == 0) {
    size_t n = 0;
    took(c, mlora_adapter_param_count((const mlora_adapter_t*)handle_arg(c, arg(step, "adapter")), &n));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "count", json_new_int((long long)n));
  } else if (strcmp(call, "adapter_versions") == 0) {
    int32_t f = 0, a = 0, mv = 0;
    took(c, mlora_adapter_versions((const mlora_adapter_t*)handle_arg(c, arg(step, "adapter")), &f, &a, &mv));
    if (c->status == MLORA_STATUS_OK) {
      json_set(c->values, "format_version", json_new_int(f));
      json_set(c->values, "adapter_version", json_new_int(a));
      json_set(c->values, "model_version", json_new_int(mv));
    }
  } else if (strcmp(call, "run_options_create") == 0) {
    mlora_run_options_t* o = NULL;
    took(c, mlora_run_options_create(&o));
    c->handle = o;
    c->handle_kind = K_RUN_OPTIONS;
  } else if (strcmp(call, "run_options_release") == 0) {
    mlora_run_options_release((mlora_run_options_t*)handle_arg(c, arg(step, "options")));
  } else if (strcmp(call, "run_options_set_active_adapters") == 0) {
    do_set_active(c, step, 0);
  } else if (strcmp(call, "run_options_set_active_adapters_per_row") == 0) {
    do_set_per_row(c, step, 0);
  } else if (strcmp(call, "run_options_active_count") == 0) {
    size_t n = 0;
    took(c, mlora_run_options_active_count((const mlora_run_options_t*)handle_arg(c, arg(step, "options")), &n));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "count", json_new_int((long long)n));
  } else if (strcmp(call, "generator_params_create") == 0) {
    mlora_generator_params_t* p = NULL;
    const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
    if (!c->error[0]) took(c, mlora_generator_params_create(m, &p));
    c->handle = p;
    c->handle_kind = K_GEN_PARAMS;
  } else if (strcmp(call, "generator_params_release") == 0) {
    mlora_generator_params_release((mlora_generator_params_t*)handle_arg(c, arg(step, "params")));
  } else if (strcmp(call, "generator_params_set_search_number") == 0 ||
             strcmp(call, "generator_params_set_search_bool") == 0 ||
             strcmp(call, "generator_params_get_search_number") == 0) {
    mlora_generator_params_t* p = (mlora_generator_params_t*)handle_arg(c, arg(step, "params"));
    char* name = str_arg(arg(step, "name"), &ok);
    const json* value = value_ref(arg(step, "value"));
    double d = value && value->t == J_NUM ? value->num : value && value->t == J_BOOL ? value->b : 0.0;
    if (!c->error[0]) {
      if (strcmp(call + 17, "set_search_number") == 0) {
        took(c, mlora_generator_params_set_search_number(p, name, d));
      } else if (strcmp(call + 17, "set_search_bool") == 0) {
        took(c, mlora_generator_params_set_search_bool(p, name, (int32_t)d));
      } else {
        double v = 0.0;
        took(c, mlora_generator_params_get_search_number(p, name, &v));
        if (c->status == MLORA_STATUS_OK) json_set(c->values, "value", json_new_num(v));
      }
    }
    free(name);
  } else if (strcmp(call, "generator_params_set_active_adapters") == 0) {
    do_set_active(c, step, 1);
  } else if (strcmp(call, "generator_params_set_active_adapters_per_row") == 0) {
    do_set_per_row(c, step, 1);
  } else if (strcmp(call, "generator_set_active_adapters_per_row") == 0) {
    do_set_per_row(c, step, 2);
  } else if (strcmp(call, "generator_create") == 0) {
    mlora_generator_t* g = NULL;
    const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
    const mlora_generator_params_t* p = (const mlora_generator_params_t*)handle_arg(c, arg(step, "params"));
    if (!c->error[0]) took(c, mlora_generator_create(m, p, &g));
    c->handle = g;
    c->handle_kind = K_GENERATOR;
  } else if (strcmp(call, "generator_release") == 0) {
    mlora_generator_release((mlora_generator_t*)handle_arg(c, arg(step, "generator")));
  } else if (strcmp(call, "generator_append_tokens") == 0) {
    do_append(c, step);
  } else if (strcmp(call, "generator_append_token_sequences") == 0) {
    do_append_sequences(c, step);
  } else if (strcmp(call, "generator_generate_next_token") == 0) {
    mlora_generator_t* g = (mlora_generator_t*)handle_arg(c, arg(step, "generator"));
    if (!c->error[0]) took(c, mlora_generator_generate_next_token(g));
  } else if (strcmp(call, "generate_until_done") == 0) {
    do_until_done(c, step);
  } else if (strcmp(call, "generator_is_done") == 0) {
    const mlora_generator_t* g = (const mlora_generator_t*)handle_arg(c, arg(step, "generator"));
    int32_t done = 0;
    if (!c->error[0]) took(c, mlora_generator_is_done(g, &done));
    if (c->status == MLORA_STATUS_OK) json_set(c->values, "done", json_new_int(done));
  } else if (strcmp(call, "generator_get_sequence") == 0) {
    do_tokens(c, 0, step);
  } else if (strcmp(call, "generator_get_next_tokens") == 0) {
    do_tokens(c, 1, step);
  } else if (strcmp(call, "engine_options_create") == 0) {
    mlora_engine_options_t* o = NULL;
    took(c, mlora_engine_options_create(&o));
    c->handle = o;
    c->handle_kind = K_ENGINE_OPTIONS;
  } else if (strcmp(call, "engine_options_release") == 0) {
    mlora_engine_options_release((mlora_engine_options_t*)handle_arg(c, arg(step, "options")));
  } else if (strcmp(call, "engine_options_set_max_batch_size") == 0) {
    mlora_engine_options_t* o = (mlora_engine_options_t*)handle_arg(c, arg(step, "options"));
    if (!c->error[0])
      took(c, mlora_engine_options_set_max_batch_size(o, (size_t)int_arg(arg(step, "max_batch_size"), 0)));
  } else if (strcmp(call, "engine_options_set_max_tokens_per_step") == 0) {
    mlora_engine_options_t* o = (mlora_engine_options_t*)handle_arg(c, arg(step, "options"));
    if (!c->error[0])
      took(c, mlora_engine_options_set_max_tokens_per_step(o, (size_t)int_arg(arg(step, "max_tokens"), 0)));
  } else if (strcmp(call, "engine_options_set_max_queue") == 0) {
    mlora_engine_options_t* o = (mlora_engine_options_t*)handle_arg(c, arg(step, "options"));
    if (!c->error[0]) took(c, mlora_engine_options_set_max_queue(o, (size_t)int_arg(arg(step, "max_queue"), 0)));
  } else if (strcmp(call, "engine_options_set_worker") == 0) {
    mlora_engine_options_t* o = (mlora_engine_options_t*)handle_arg(c, arg(step, "options"));
    if (!c->error[0]) took(c, mlora_engine_options_set_worker(o, (int32_t)int_arg(arg(step, "enable"), 1)));
  } else if (strcmp(call, "engine_create") == 0) {
    mlora_engine_t* e = NULL;
    const mlora_model_t* m = (const mlora_model_t*)handle_arg(c, arg(step, "model"));
    const mlora_engine_options_t* o = (const mlora_engine_options_t*)handle_arg(c, arg(step, "options"));
    if (!c->error[0]) took(c, mlora_engine_create(m, o, &e));
    c->handle = e;
    c->handle_kind = K_ENGINE;
  } else if (strcmp(call, "engine_release") == 0) {
    mlora_engine_release((mlora_engine_t*)handle_arg(c, arg(step, "engine")));
  } else if (strcmp(call, "engine_close") == 0) {
    mlora_engine_t* e = (mlora_engine_t*)handle_arg(c, arg(step, "engine"));
    if (!c->error[0]) took(c, mlora_engine_close(e));
  } else if (strcmp(call, "engine_step") == 0) {
    mlora_engine_t* e = (mlora_engine_t*)handle_arg(c, arg(step, "engine"));
    int32_t more = 0;
    if (!c->error[0]) took(c, mlora_engine_step(e, &more));
    if (c->status == MLORA_STATUS_OK && !c->error[0]) json_set(c->values, "has_work", json_new_int(more));
  } else if (strcmp(call, "engine_submit") == 0) {
    do_submit(c, step);
  } else if (strcmp(call, "engine_run_until_done") == 0) {
    do_engine_until_done(c, step);
  } else if (strcmp(call, "request_read") == 0) {
    do_request_read(c, step, 0);
  } else if (strcmp(call, "request_read_all") == 0) {
    do_request_read(c, step, 1);
  } else if (strcmp(call, "request_cancel") == 0) {
    mlora_request_t* r = (mlora_request_t*)handle_arg(c, arg(step, "request"));
    int32_t cancelled = 0;
    if (!c->error[0]) took(c, mlora_request_cancel(r, &cancelled));
    if (c->status == MLORA_STATUS_OK && !c->error[0]) json_set(c->values, "cancelled", json_new_int(cancelled));
  } else if (strcmp(call, "request_finish_reason") == 0) {
    const mlora_request_t* r = (const mlora_request_t*)handle_arg(c, arg(step, "request"));
    mlora_finish_reason_t reason = 0;
    if (!c->error[0]) took(c, mlora_request_finish_reason(r, &reason));
    if (c->status == MLORA_STATUS_OK && !c->error[0]) json_set(c->values, "reason", json_new_int(reason));
  } else if (strcmp(call, "request_usage") == 0) {
    const mlora_request_t* r = (const mlora_request_t*)handle_arg(c, arg(step, "request"));
    uint64_t prompt = 0, generated = 0;
    if (!c->error[0]) took(c, mlora_request_usage(r, &prompt, &generated, NULL, NULL));
    if (c->status == MLORA_STATUS_OK && !c->error[0]) {
      json_set(c->values, "prompt_tokens", json_new_int((long long)prompt));
      json_set(c->values, "generated_tokens", json_new_int((long long)generated));
    }
  } else if (strcmp(call, "request_release") == 0) {
    mlora_request_release((mlora_request_t*)handle_arg(c, arg(step, "request")));
  } else {
    ctx_error(c, "unknown call %s", call);
  }
  if (!ok) ctx_error(c, "malformed string argument in step", "");
}

/* ---- checking ------------------------------------------------------------------------------------------ */

static int is_release(const char* call) {
  size_t n = strlen(call);
  return n > 8 && strcmp(call + n - 8, "_release") == 0;
}

/* Marks the variable a release step named as released (its pointer is kept, to be passed again). */
static void mark_released(const json* step) {
  const json* args = json_get(step, "args");
  size_t i;
  for (i = 0; args && i < args->n; ++i) {
    const json* v = args->items[i];
    if (v->t == J_STR && v->str[0] == '$') {
      var_t* var = find_var(v->str + 1);
      if (var) var->released = 1;
    }
  }
}

static void compare_output(ctx_t* c, const char* name, const json* want, double atol, double rtol) {
  size_t i;
  const json* ref;
  mlora_tensor_t* t = NULL;
  const void* data = NULL;
  size_t bytes = 0, ndim = 0, count = 1;
  int64_t shape[8];
  mlora_dtype_t d = 0;
  char msg[256];
  for (i = 0; i < c->n_outputs; ++i)
    if (strcmp(c->output_names[i], name) == 0) t = c->outputs[i];
  if (!t) {
    ctx_error(c, "output %s missing", name);
    return;
  }
  if (json_get(want, "atol")) atol = json_get(want, "atol")->num;
  if (json_get(want, "rtol")) rtol = json_get(want, "rtol")->num;
  ref = json_get(json_get(g_reference, "tensors"), json_get(want, "ref") ? json_get(want, "ref")->str : "");
  if (!ref) {
    ctx_error(c, "reference tensor for output %s not found", name);
    return;
  }
  if (mlora_tensor_dtype(t, &d) != MLORA_STATUS_OK || d != MLORA_DTYPE_FLOAT32 ||
      mlora_tensor_shape(t, shape, 8, &ndim) != MLORA_STATUS_OK ||
      mlora_tensor_data(t, &data, &bytes) != MLORA_STATUS_OK) {
    ctx_error(c, "output %s is not a readable float32 tensor", name);
    return;
  }
  if (ndim != json_get(ref, "shape")->n) {
    ctx_error(c, "output %s has the wrong rank", name);
    return;
  }
  for (i = 0; i < ndim; ++i) {
    if (shape[i] != json_get(ref, "shape")->items[i]->inum) {
      ctx_error(c, "output %s has the wrong shape", name);
      return;
    }
    count *= (size_t)shape[i];
  }
  if (bytes != count * 4 || json_get(ref, "data")->n != count) {
    ctx_error(c, "output %s has the wrong size", name);
    return;
  }
  for (i = 0; i < count; ++i) {
    float got;
    double exp = json_get(ref, "data")->items[i]->num;
    memcpy(&got, (const unsigned char*)data + 4 * i, 4);
    if (!(fabs((double)got - exp) <= atol + rtol * fabs(exp))) {
      snprintf(msg, sizeof msg, "output %%s element %lu is %.9g, expected %.9g", (unsigned long)i, (double)got, exp);
      ctx_error(c, msg, name);
      return;
    }
  }
}

static void check(ctx_t* c, const json* step, const json* scenario) {
  const json* expect = json_get(step, "expect");
  const json* want_status = json_get(expect, "status");
  const json* msg = json_get(expect, "message");
  const json* values = json_get(expect, "values");
  const json* outs = json_get(expect, "outputs");
  const json* tol = json_get(scenario, "tolerance");
  double atol = tol && json_get(tol, "atol") ? json_get(tol, "atol")->num : 1e-5;
  double rtol = tol && json_get(tol, "rtol") ? json_get(tol, "rtol")->num : 1e-5;
  const char* want = want_status ? want_status->str : "MLORA_STATUS_OK";
  const char* got = mlora_status_name(c->status);
  size_t i;
  if (c->error[0]) return;
  if (strcmp(want, got) != 0) {
    char buf[1024];
    snprintf(buf, sizeof buf, "status %s, expected %s (message: %.700s)", got, want, c->message);
    ctx_error(c, "%s", buf);
    return;
  }
  if (c->status != MLORA_STATUS_OK && !c->message[0]) ctx_error(c, "failed with an empty last error message", "");
  if (!c->last_status_ok) ctx_error(c, "mlora_last_error_status() differs from the returned status", "");
  for (i = 0; msg && i < (msg->t == J_ARR ? msg->n : 1); ++i) {
    const json* sub = msg->t == J_ARR ? msg->items[i] : msg;
    if (!strstr(c->message, sub->str)) {
      char buf[1024];
      snprintf(buf, sizeof buf, "message \"%.700s\" lacks \"%s\"", c->message, sub->str);
      ctx_error(c, "%s", buf);
    }
  }
  for (i = 0; values && i < values->n; ++i) {
    const json* gotv = json_get(c->values, values->keys[i]);
    const json* wantv = value_ref(values->items[i]);
    if (!wantv) {
      ctx_error(c, "value_ref of %s not in reference.json's values", values->keys[i]);
    } else if (!json_equal(gotv, wantv)) {
      char buf[1024] = "", a[400] = "", b[400] = "";
      json_dump(gotv, a, sizeof a);
      json_dump(wantv, b, sizeof b);
      snprintf(buf, sizeof buf, "value %s is %s, expected %s", values->keys[i], a, b);
      ctx_error(c, "%s", buf);
    }
  }
  for (i = 0; outs && i < outs->n; ++i) compare_output(c, outs->keys[i], outs->items[i], atol, rtol);
}

/* Binds what a step produced ("out": "v" for the handle; {"field": "v"} for values and run outputs). */
static void bind_outputs(ctx_t* c, const json* step) {
  const json* out = json_get(step, "out");
  size_t i, j;
  if (c->status == MLORA_STATUS_OK && out && out->t == J_STR && c->handle) {
    bind_handle(out->str, c->handle_kind, c->handle);
    c->handle = NULL;
  }
  if (c->handle) release_handle(c->handle_kind, c->handle); /* produced but not bound */
  c->handle = NULL;
  for (i = 0; i < c->n_outputs; ++i) {
    const json* target = out && out->t == J_OBJ ? json_get(out, c->output_names[i]) : NULL;
    if (target) bind_handle(target->str, K_TENSOR, c->outputs[i]);
    else mlora_tensor_release(c->outputs[i]);
    free(c->output_names[i]);
  }
  c->n_outputs = 0;
  for (j = 0; out && out->t == J_OBJ && j < out->n; ++j) {
    const json* v = json_get(c->values, out->keys[j]);
    if (v) {
      char text[4096] = "";
      json_dump(v, text, sizeof text);
      bind_value(out->items[j]->str, json_new_str(text));
    }
  }
}

static int g_passed, g_failed;

static void run_scenario(const char* path) {
  char err[256];
  json* doc = json_parse_file(path, err, sizeof err);
  const json* steps;
  size_t i;
  int failed_before = g_failed, passed_before = g_passed;
  const char* name;
  if (!doc) {
    fprintf(stderr, "FAIL %s: %s\n", path, err);
    g_failed++;
    return;
  }
  name = json_get(doc, "name") ? json_get(doc, "name")->str : path;
  steps = json_get(doc, "steps");
  for (i = 0; steps && i < steps->n; ++i) {
    const json* step = steps->items[i];
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.values = json_new_obj();
    execute(&c, step);
    check(&c, step, doc);
    bind_outputs(&c, step);
    if (is_release(json_get(step, "call")->str)) mark_released(step);
    if (c.error[0]) {
      g_failed++;
      printf("FAIL %s/%s: %s\n", name, json_get(step, "id") ? json_get(step, "id")->str : "?", c.error);
    } else {
      g_passed++;
    }
    json_free(c.values);
  }
  clear_vars();
  printf("%-10s %d passed, %d failed\n", name, g_passed - passed_before, g_failed - failed_before);
  json_free(doc);
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

int main(int argc, char** argv) {
  char err[256], path[2048];
  char* files[256];
  int n = 0, i;
  DIR* dir;
  struct dirent* e;
  if (argc != 3) {
    fprintf(stderr, "usage: %s VECTORS_DIR FIXTURES_DIR\n", argv[0]);
    return 2;
  }
  snprintf(g_fixtures, sizeof g_fixtures, "%s", argv[2]);
  snprintf(path, sizeof path, "%s/reference.json", g_fixtures);
  g_reference = json_parse_file(path, err, sizeof err);
  if (!g_reference) {
    fprintf(stderr, "conformance_c: %s (run tests/conformance/make_fixtures.py first)\n", err);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  dir = opendir(argv[1]);
  if (!dir) {
    fprintf(stderr, "conformance_c: cannot open %s\n", argv[1]);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  while ((e = readdir(dir)) != NULL && n < 256) {
    size_t len = strlen(e->d_name);
    if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0) files[n++] = strdup(e->d_name);
  }
  closedir(dir);
  qsort(files, (size_t)n, sizeof files[0], cmp_str);
  printf("conformance (C, raw ABI) — library %s, ABI %d\n", mlora_version_string(), mlora_abi_version());
  for (i = 0; i < n; ++i) {
    snprintf(path, sizeof path, "%s/%s", argv[1], files[i]);
    run_scenario(path);
    free(files[i]);
  }
  json_free(g_reference);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
