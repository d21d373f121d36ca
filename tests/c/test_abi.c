/* C tests of the ABI on a one-projection LoRA model (fixtures from make_fixtures.py).
 * Usage: test_abi FIXTURE_DIR. Prints "N passed, N failed"; exit code 1 on any failure. */
#define _XOPEN_SOURCE 700 /* truncate, getpid */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multilora/multilora.h"

static int g_passed, g_failed;
static char g_dir[1024];

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (cond) {                                                           \
      g_passed++;                                                         \
    } else {                                                              \
      g_failed++;                                                         \
      fprintf(stderr, "FAIL %s:%d: %s — ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, " (last error: %s)\n", mlora_last_error_message()); \
    }                                                                     \
  } while (0)

#define CHECK_STATUS(call, expected)                                                                                   \
  do {                                                                                                                 \
    mlora_status_t s_ = (call);                                                                                        \
    CHECK(s_ == (expected), "%s returned %s, expected %s", #call, mlora_status_name(s_), mlora_status_name(expected)); \
  } while (0)

static const char* path_of(const char* name) {
  static char buf[4][1200];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", g_dir, name);
  return buf[i];
}

static int read_floats(const char* name, float* out, size_t n) {
  FILE* f = fopen(path_of(name), "rb");
  if (!f) return 0;
  size_t got = fread(out, sizeof(float), n, f);
  fclose(f);
  return got == n;
}

/* Runs the model on x with the given options; compares y with expect file. */
static void run_and_compare(const mlora_model_t* model, const mlora_run_options_t* opts, const char* expect_file) {
  float x[16], expect[12];
  CHECK(read_floats("x.bin", x, 16), "read x.bin");
  CHECK(read_floats(expect_file, expect, 12), "read %s", expect_file);
  const int64_t shape[2] = {2, 8};
  mlora_tensor_t* in = NULL;
  CHECK_STATUS(mlora_tensor_create(MLORA_DTYPE_FLOAT32, shape, 2, x, sizeof x, &in), MLORA_STATUS_OK);
  const char* in_names[1] = {"x"};
  const char* out_names[1] = {"y"};
  const mlora_tensor_t* ins[1] = {in};
  mlora_tensor_t* out = NULL;
  CHECK_STATUS(mlora_model_run(model, opts, in_names, ins, 1, out_names, 1, &out), MLORA_STATUS_OK);
  if (out) {
    const void* data = NULL;
    size_t bytes = 0;
    int64_t oshape[4];
    size_t ndim = 0;
    CHECK_STATUS(mlora_tensor_data(out, &data, &bytes), MLORA_STATUS_OK);
    CHECK_STATUS(mlora_tensor_shape(out, oshape, 4, &ndim), MLORA_STATUS_OK);
    CHECK(ndim == 2 && oshape[0] == 2 && oshape[1] == 6, "output shape");
    CHECK(bytes == sizeof expect, "output bytes %zu", bytes);
    float max_err = 0;
    for (int i = 0; i < 12 && bytes == sizeof expect; ++i) {
      float e = fabsf(((const float*)data)[i] - expect[i]);
      if (e > max_err) max_err = e;
    }
    CHECK(max_err < 1e-4f, "%s: max abs error %g", expect_file, max_err);
  }
  mlora_tensor_release(out);
  mlora_tensor_release(in);
}

static void test_library(void) {
  CHECK(strcmp(mlora_version_string(), MLORA_VERSION_STRING) == 0, "version string");
  CHECK(mlora_abi_version() == MLORA_ABI_VERSION, "abi version");
  CHECK(strcmp(mlora_status_name(MLORA_STATUS_NOT_FOUND), "MLORA_STATUS_NOT_FOUND") == 0, "status name");
  CHECK(strcmp(mlora_status_name(9999), "MLORA_STATUS_UNKNOWN") == 0, "unknown status name");
  {
    /* mlora_dtype_name / mlora_dtype_size against C's own sizes (bool is one byte in every ABI we target). */
    static const struct {
      mlora_dtype_t dtype;
      const char* name;
      size_t size;
    } dtypes[] = {
        {MLORA_DTYPE_FLOAT32, "float32", sizeof(float)},      {MLORA_DTYPE_UINT8, "uint8", sizeof(uint8_t)},
        {MLORA_DTYPE_INT8, "int8", sizeof(int8_t)},           {MLORA_DTYPE_UINT16, "uint16", sizeof(uint16_t)},
        {MLORA_DTYPE_INT16, "int16", sizeof(int16_t)},        {MLORA_DTYPE_INT32, "int32", sizeof(int32_t)},
        {MLORA_DTYPE_INT64, "int64", sizeof(int64_t)},        {MLORA_DTYPE_BOOL, "bool", 1},
        {MLORA_DTYPE_FLOAT16, "float16", sizeof(uint16_t)},   {MLORA_DTYPE_FLOAT64, "float64", sizeof(double)},
        {MLORA_DTYPE_UINT32, "uint32", sizeof(uint32_t)},     {MLORA_DTYPE_UINT64, "uint64", sizeof(uint64_t)},
        {MLORA_DTYPE_BFLOAT16, "bfloat16", sizeof(uint16_t)},
    };
    size_t i, size = 0;
    for (i = 0; i < sizeof dtypes / sizeof dtypes[0]; ++i) {
      CHECK(strcmp(mlora_dtype_name(dtypes[i].dtype), dtypes[i].name) == 0, "dtype name of %d", (int)dtypes[i].dtype);
      CHECK_STATUS(mlora_dtype_size(dtypes[i].dtype, &size), MLORA_STATUS_OK);
      CHECK(size == dtypes[i].size, "dtype size of %s: %zu", dtypes[i].name, size);
    }
    CHECK(strcmp(mlora_dtype_name(8), "unknown") == 0, "unknown dtype name");
    size = 77;
    CHECK_STATUS(mlora_dtype_size(8, &size), MLORA_STATUS_INVALID_ARGUMENT);
    CHECK(size == 77, "nothing written for an unknown dtype");
    CHECK_STATUS(mlora_dtype_size(MLORA_DTYPE_FLOAT32, NULL), MLORA_STATUS_INVALID_ARGUMENT);
  }
  CHECK(mlora_last_error_message() != NULL, "last error never NULL");
  char path[4096], version[64];
  size_t plen = 0, vlen = 0;
  CHECK_STATUS(mlora_ort_info(path, sizeof path, &plen, version, sizeof version, &vlen), MLORA_STATUS_OK);
  CHECK(vlen > 1 && strlen(version) + 1 == vlen, "ort version '%s'", version);
  CHECK_STATUS(mlora_ort_info(NULL, 0, &plen, version, sizeof version, &vlen), MLORA_STATUS_BUFFER_TOO_SMALL);
  CHECK(plen == strlen(path) + 1, "needed size reported: %zu", plen);
}

static void test_misuse(void) {
  size_t n = 0;
  CHECK_STATUS(mlora_model_input_count(NULL, &n), MLORA_STATUS_INVALID_HANDLE);
  CHECK(strstr(mlora_last_error_message(), "model is NULL") != NULL, "message names the handle");
  CHECK(mlora_last_error_status() == MLORA_STATUS_INVALID_HANDLE, "last status");
  mlora_run_options_t* opts = NULL;
  CHECK_STATUS(mlora_run_options_create(&opts), MLORA_STATUS_OK);
  mlora_run_options_release(opts);
  CHECK_STATUS(mlora_run_options_active_count(opts, &n), MLORA_STATUS_INVALID_HANDLE);
  CHECK(strstr(mlora_last_error_message(), "not a live run options handle") != NULL, "released handle named");
  mlora_run_options_release(opts); /* double release is harmless */
  mlora_run_options_release(NULL);
  /* a handle of the wrong type */
  mlora_model_options_t* mo = NULL;
  CHECK_STATUS(mlora_model_options_create(&mo), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_model_input_count((const mlora_model_t*)mo, &n), MLORA_STATUS_INVALID_HANDLE);
  CHECK_STATUS(mlora_model_options_set_log_level(mo, 7), MLORA_STATUS_INVALID_ARGUMENT);
  mlora_model_options_release(mo);
  mlora_model_t* model = NULL;
  CHECK_STATUS(mlora_model_create(path_of("no_such_model.onnx"), NULL, &model), MLORA_STATUS_NOT_FOUND);
  CHECK(strstr(mlora_last_error_message(), "no_such_model.onnx") != NULL, "message names the file");
  CHECK(model == NULL, "no handle on failure");
  CHECK_STATUS(mlora_model_create("\xff\xfe", NULL, &model), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(mlora_last_error_message(), "UTF-8") != NULL, "invalid UTF-8 named");
  CHECK_STATUS(mlora_model_create(NULL, NULL, &model), MLORA_STATUS_INVALID_ARGUMENT);
  const int64_t shape[1] = {3};
  float data[2] = {0, 0};
  mlora_tensor_t* t = NULL;
  CHECK_STATUS(mlora_tensor_create(MLORA_DTYPE_FLOAT32, shape, 1, data, sizeof data, &t), MLORA_STATUS_SHAPE_MISMATCH);
  CHECK_STATUS(mlora_tensor_create(12345, shape, 1, data, sizeof data, &t), MLORA_STATUS_INVALID_ARGUMENT);
}

static void test_model_and_adapters(void) {
  mlora_model_t* model = NULL;
  CHECK_STATUS(mlora_model_create(path_of("model.onnx"), NULL, &model), MLORA_STATUS_OK);
  if (!model) return;
  size_t n = 0, len = 0;
  CHECK_STATUS(mlora_model_input_count(model, &n), MLORA_STATUS_OK);
  CHECK(n == 1, "one regular input, got %zu", n);
  CHECK_STATUS(mlora_model_lora_count(model, &n), MLORA_STATUS_OK);
  CHECK(n == 2, "two LoRA inputs, got %zu", n);
  char name[256];
  CHECK_STATUS(mlora_model_input_name(model, 0, name, sizeof name, &len), MLORA_STATUS_OK);
  CHECK(strcmp(name, "x") == 0 && len == 2, "input name '%s' len %zu", name, len);
  CHECK_STATUS(mlora_model_input_name(model, 0, name, 1, &len), MLORA_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == 2, "needed size %zu", len);
  CHECK_STATUS(mlora_model_input_name(model, 5, name, sizeof name, &len), MLORA_STATUS_INVALID_ARGUMENT);
  for (size_t i = 0; i < 2; ++i) {
    mlora_dtype_t dt = 0;
    int64_t d0 = -2, d1 = -2;
    int32_t axis = -1;
    CHECK_STATUS(mlora_model_lora_name(model, i, name, sizeof name, &len), MLORA_STATUS_OK);
    CHECK_STATUS(mlora_model_lora_info(model, i, &dt, &d0, &d1, &axis), MLORA_STATUS_OK);
    int is_a = strstr(name, "lora_A") != NULL;
    CHECK(dt == MLORA_DTYPE_FLOAT32, "lora dtype");
    CHECK(is_a ? (d0 == 8 && axis == 1) : (d1 == 6 && axis == 0), "lora %s dims [%lld, %lld] axis %d", name,
          (long long)d0, (long long)d1, axis);
  }

  mlora_adapters_t* adapters = NULL;
  CHECK_STATUS(mlora_adapters_create(model, &adapters), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("a.onnx_adapter"), "a", MLORA_LOAD_DEFAULT), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("b.onnx_adapter"), "b", MLORA_LOAD_DEFAULT), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("b.onnx_adapter"), "a", MLORA_LOAD_DEFAULT),
               MLORA_STATUS_ALREADY_EXISTS);
  CHECK(strstr(mlora_last_error_message(), "'a'") != NULL, "duplicate named");
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("missing.onnx_adapter"), "m", 0), MLORA_STATUS_NOT_FOUND);
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("a.onnx_adapter"), "", 0), MLORA_STATUS_INVALID_ARGUMENT);

  char names[64];
  size_t count = 0;
  CHECK_STATUS(mlora_adapters_names(adapters, names, sizeof names, &len, &count), MLORA_STATUS_OK);
  CHECK(count == 2 && len == 4 && strcmp(names, "a") == 0 && strcmp(names + 2, "b") == 0, "names list");
  CHECK_STATUS(mlora_adapters_names(adapters, names, 3, &len, &count), MLORA_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == 4, "names needed size %zu", len);

  mlora_adapter_t* info = NULL;
  CHECK_STATUS(mlora_adapters_get(adapters, "b", &info), MLORA_STATUS_OK);
  int64_t rank = 0;
  uint64_t mapped = 0, copied = 1;
  int32_t fv = 0, av = 0, mv = -1;
  CHECK_STATUS(mlora_adapter_rank(info, &rank), MLORA_STATUS_OK);
  CHECK(rank == 3, "rank %lld", (long long)rank);
  CHECK_STATUS(mlora_adapter_bytes(info, &mapped, &copied), MLORA_STATUS_OK);
  CHECK(mapped > 0 && copied == 0, "mapped %llu copied %llu", (unsigned long long)mapped, (unsigned long long)copied);
  CHECK_STATUS(mlora_adapter_versions(info, &fv, &av, &mv), MLORA_STATUS_OK);
  CHECK(fv == 1 && av == 1 && mv == 0, "versions %d %d %d", fv, av, mv);
  mlora_adapter_release(info);
  CHECK_STATUS(mlora_adapters_get(adapters, "zzz", &info), MLORA_STATUS_NOT_FOUND);

  mlora_run_options_t* base = NULL;
  mlora_run_options_t* opt_a = NULL;
  mlora_run_options_t* opt_b = NULL;
  mlora_run_options_t* opt_mix = NULL;
  CHECK_STATUS(mlora_run_options_create(&base), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_run_options_create(&opt_a), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_run_options_create(&opt_b), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_run_options_create(&opt_mix), MLORA_STATUS_OK);
  const char* na[1] = {"a"};
  const char* nb[1] = {"b"};
  const char* nmix[2] = {"a", "b"};
  const float wmix[2] = {1.0f, 0.5f};
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_a, adapters, na, NULL, 1), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_b, adapters, nb, NULL, 1), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_mix, adapters, nmix, wmix, 2), MLORA_STATUS_OK);
  const char* nbad[1] = {"nope"};
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_a, adapters, nbad, NULL, 1), MLORA_STATUS_NOT_FOUND);
  CHECK(strstr(mlora_last_error_message(), "'nope'") != NULL, "unknown adapter named");
  const char* ndup[2] = {"a", "a"};
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_a, adapters, ndup, NULL, 2), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_run_options_active_count(opt_a, &n), MLORA_STATUS_OK);
  CHECK(n == 1, "failed set leaves the options unchanged (%zu)", n);

  run_and_compare(model, NULL, "expect_base.bin");
  run_and_compare(model, base, "expect_base.bin");
  run_and_compare(model, opt_a, "expect_a.bin");
  run_and_compare(model, opt_b, "expect_b.bin");
  run_and_compare(model, opt_mix, "expect_mix.bin");

  /* Unload while in use: holders keep working; the name is gone at once. */
  CHECK_STATUS(mlora_adapters_unload(adapters, "a"), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_adapters_unload(adapters, "a"), MLORA_STATUS_NOT_FOUND);
  run_and_compare(model, opt_a, "expect_a.bin");
  run_and_compare(model, opt_mix, "expect_mix.bin");
  CHECK_STATUS(mlora_run_options_set_active_adapters(opt_b, adapters, na, NULL, 1), MLORA_STATUS_NOT_FOUND);

  /* Release in any order: registry and model first, options still run. */
  mlora_adapters_release(adapters);
  mlora_model_release(model);
  mlora_run_options_release(opt_b);
  mlora_run_options_release(base);
  mlora_run_options_release(opt_mix);
  mlora_run_options_release(opt_a);

  /* Bad input names on a fresh model. */
  CHECK_STATUS(mlora_model_create(path_of("model.onnx"), NULL, &model), MLORA_STATUS_OK);
  float x[16] = {0};
  const int64_t wrong[2] = {2, 5};
  mlora_tensor_t* in = NULL;
  CHECK_STATUS(mlora_tensor_create(MLORA_DTYPE_FLOAT32, wrong, 2, x, 10 * sizeof(float), &in), MLORA_STATUS_OK);
  const char* in_names[1] = {"x"};
  const mlora_tensor_t* ins[1] = {in};
  mlora_tensor_t* out = NULL;
  CHECK_STATUS(mlora_model_run(model, NULL, in_names, ins, 1, NULL, 0, &out), MLORA_STATUS_SHAPE_MISMATCH);
  CHECK(out == NULL, "no output on failure");
  const char* unknown[1] = {"xx"};
  CHECK_STATUS(mlora_model_run(model, NULL, unknown, ins, 1, NULL, 0, &out), MLORA_STATUS_NOT_FOUND);
  mlora_tensor_release(in);
  mlora_model_release(model);
  CHECK_STATUS(mlora_shutdown(), MLORA_STATUS_OK);

  /* The thread policy: checked, then settable while no environment exists (the next model uses it). */
  CHECK_STATUS(mlora_set_global_threads(-2, 0), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_set_global_threads(0, 2), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_set_global_threads(1, 0), MLORA_STATUS_OK);
}

/* Hostile inputs a C host can produce (issue 11): sizes that lie, weights that overflow, the copy flag, options. */
static void test_hostile(void) {
  /* A small real buffer with a size that lies: FORMAT before anything is copied (it used to crash). */
  FILE* f = fopen(path_of("a.onnx_adapter"), "rb");
  CHECK(f != NULL, "open a.onnx_adapter");
  if (!f) return;
  static unsigned char buf[1 << 16];
  const size_t got = fread(buf, 1, sizeof buf, f);
  fclose(f);
  CHECK(got > 16 && got < sizeof buf, "read a.onnx_adapter (%zu bytes)", got);
  mlora_adapter_t* ad = NULL;
  const size_t lies[3] = {SIZE_MAX, (size_t)3 << 30, ((size_t)1 << 31) - 1};
  mlora_model_t* model = NULL;
  CHECK_STATUS(mlora_model_create(path_of("model.onnx"), NULL, &model), MLORA_STATUS_OK);
  /* A model exists (a global pool of 1 thread, set above): the policy is fixed now. */
  CHECK_STATUS(mlora_set_global_threads(-1, 1), MLORA_STATUS_IN_USE);
  mlora_adapters_t* adapters = NULL;
  CHECK_STATUS(mlora_adapters_create(model, &adapters), MLORA_STATUS_OK);
  for (int i = 0; i < 3; ++i) {
    CHECK_STATUS(mlora_adapter_open_from_memory(buf, lies[i], &ad), MLORA_STATUS_FORMAT);
    CHECK(ad == NULL && strstr(mlora_last_error_message(), "2 GiB") != NULL, "lying size %zu: %s", lies[i],
          mlora_last_error_message());
    CHECK_STATUS(mlora_adapters_load_from_memory(adapters, buf, lies[i], "x", 0), MLORA_STATUS_FORMAT);
  }
  CHECK_STATUS(mlora_adapters_load_from_memory(adapters, buf, got, "mem", 0), MLORA_STATUS_OK);

  /* MLORA_LOAD_COPY: private memory (nothing mapped), same numbers, immune to truncating the file. */
  char copy_path[1100];
  snprintf(copy_path, sizeof copy_path, "%s/copy_%d.onnx_adapter", g_dir, (int)getpid());
  FILE* w = fopen(copy_path, "wb");
  CHECK(w != NULL && fwrite(buf, 1, got, w) == got, "write %s", copy_path);
  if (w) fclose(w);
  CHECK_STATUS(mlora_adapters_load(adapters, copy_path, "a", MLORA_LOAD_COPY), MLORA_STATUS_OK);
  CHECK(truncate(copy_path, 0) == 0, "truncate %s", copy_path);
  mlora_adapter_t* info = NULL;
  uint64_t mapped = 1, copied = 0;
  CHECK_STATUS(mlora_adapters_get(adapters, "a", &info), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_adapter_bytes(info, &mapped, &copied), MLORA_STATUS_OK);
  CHECK(mapped == 0 && copied == got, "copy load: mapped %llu copied %llu", (unsigned long long)mapped,
        (unsigned long long)copied);
  mlora_adapter_release(info);
  mlora_run_options_t* opts = NULL;
  CHECK_STATUS(mlora_run_options_create(&opts), MLORA_STATUS_OK);
  const char* na[1] = {"a"};
  CHECK_STATUS(mlora_run_options_set_active_adapters(opts, adapters, na, NULL, 1), MLORA_STATUS_OK);
  run_and_compare(model, opts, "expect_a.bin"); /* the file is empty now: a mapping would raise SIGBUS */
  remove(copy_path);
  CHECK_STATUS(mlora_adapters_load(adapters, path_of("b.onnx_adapter"), "b", 64), MLORA_STATUS_INVALID_ARGUMENT);

  /* Weights beyond -1e6..1e6 (3.4e38 gave all-NaN logits) are refused naming the adapter. */
  const float huge[1] = {3.4e38f};
  CHECK_STATUS(mlora_run_options_set_active_adapters(opts, adapters, na, huge, 1), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(mlora_last_error_message(), "'a'") != NULL, "huge weight: adapter named");

  mlora_model_options_t* mo = NULL;
  CHECK_STATUS(mlora_model_options_create(&mo), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_model_options_set_allow_external_paths(mo, 2), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_model_options_set_allow_external_paths(mo, 1), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_model_options_set_allow_external_paths(NULL, 1), MLORA_STATUS_INVALID_HANDLE);
  CHECK_STATUS(mlora_model_options_set_base_graph(mo, 2), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_model_options_set_base_graph(mo, 0), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_model_options_set_base_graph(NULL, 1), MLORA_STATUS_INVALID_HANDLE);
  mlora_model_options_release(mo);

  /* Session runs: this plain model has no base graph, so every run (the one above) is the LoRA graph's. */
  uint64_t lora_runs = 0, base_runs = 7;
  CHECK_STATUS(mlora_model_session_runs(model, &lora_runs, &base_runs), MLORA_STATUS_OK);
  CHECK(lora_runs >= 1 && base_runs == 0, "session runs %llu / %llu", (unsigned long long)lora_runs,
        (unsigned long long)base_runs);
  CHECK_STATUS(mlora_model_session_runs(model, NULL, NULL), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_model_session_runs(NULL, &lora_runs, NULL), MLORA_STATUS_INVALID_HANDLE);

  mlora_run_options_release(opts);
  mlora_adapters_release(adapters);
  mlora_model_release(model);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
  test_library();
  test_misuse();
  test_hostile();
  test_model_and_adapters();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
