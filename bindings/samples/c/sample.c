/* multilora sample host in C: load a model, load two adapters, run the base model, each adapter and a
 * weighted mix, print a few output numbers per case, unload.
 *
 * Build: cc -std=c99 -I include bindings/samples/c/sample.c -L build -lmultilora -o sample_c
 * Run:   LD_LIBRARY_PATH=build ./sample_c MODEL.onnx ADAPTER_A.onnx_adapter ADAPTER_B.onnx_adapter
 *          [GEN_DIR MAX_LENGTH PROMPT_IDS]
 *        (MULTILORA_ORT_LIBRARY may name libonnxruntime.so; see multilora.h)
 * The model's first input is fed token ids 1..5 as int64 [1, 5]; the first output is printed.
 * With GEN_DIR (a GenAI model folder with genai_config.json and adapters/a.onnx_adapter), MAX_LENGTH
 * (prompt + generated tokens) and PROMPT_IDS (comma-separated token ids), it then generates greedily with
 * the base model and with adapter a and prints the generated tokens ("gen base: 54 91 ...").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multilora/multilora.h"

/* Prints the failing call's status and message (read at once, on this thread) and exits. */
static void check(mlora_status_t status, const char* what) {
  if (status == MLORA_STATUS_OK) return;
  fprintf(stderr, "%s failed: %s: %s\n", what, mlora_status_name(status), mlora_last_error_message());
  exit(1);
}

typedef struct {
  const char* label;
  size_t count;      /* adapters in the active set (0 = base model) */
  const char* names[2];
  float weights[2];
} run_case;

/* Runs the model with the given active set and prints the output's shape and the first numbers of its last row. */
static void run(const mlora_model_t* model, const mlora_adapters_t* adapters, const char* input_name,
                const char* output_name, const run_case* c) {
  const int64_t shape[2] = {1, 5};
  const int64_t ids[5] = {1, 2, 3, 4, 5};
  mlora_tensor_t* input = NULL;
  mlora_run_options_t* options = NULL;
  mlora_tensor_t* output = NULL;
  const mlora_tensor_t* inputs[1];
  const void* data = NULL;
  size_t bytes = 0, ndim = 0, i, row;
  int64_t oshape[8];
  char dims[64] = "";

  check(mlora_tensor_create(MLORA_DTYPE_INT64, shape, 2, ids, sizeof ids, &input), "mlora_tensor_create");
  check(mlora_run_options_create(&options), "mlora_run_options_create");
  check(mlora_run_options_set_active_adapters(options, adapters, c->names, c->weights, c->count),
        "mlora_run_options_set_active_adapters");
  inputs[0] = input;
  check(mlora_model_run(model, options, &input_name, inputs, 1, &output_name, 1, &output), "mlora_model_run");
  check(mlora_tensor_shape(output, oshape, 8, &ndim), "mlora_tensor_shape");
  check(mlora_tensor_data(output, &data, &bytes), "mlora_tensor_data");
  for (i = 0; i < ndim; ++i) {
    size_t n = strlen(dims);
    snprintf(dims + n, sizeof dims - n, "%s%lld", i ? ", " : "", (long long)oshape[i]);
  }
  row = ndim ? (size_t)oshape[ndim - 1] : 1;
  printf("%-5s %s[%s] last row:", c->label, output_name, dims);
  for (i = 0; i < 4 && i < row; ++i) printf(" %.6f", ((const float*)data)[bytes / sizeof(float) - row + i]);
  printf("\n");
  mlora_tensor_release(output);
  mlora_run_options_release(options);
  mlora_tensor_release(input);
}

/* Greedy generation with the given active set (count 0 = base model); prints the generated tokens. */
static void generate(const mlora_model_t* model, const mlora_adapters_t* adapters, const char* label,
                     const char* const* names, size_t count, double max_length, const int32_t* prompt,
                     size_t prompt_len) {
  mlora_generator_params_t* params = NULL;
  mlora_generator_t* gen = NULL;
  int32_t done = 0, seq[256];
  size_t len = 0, i;

  check(mlora_generator_params_create(model, &params), "mlora_generator_params_create");
  check(mlora_generator_params_set_search_number(params, "max_length", max_length), "set max_length");
  check(mlora_generator_params_set_search_bool(params, "do_sample", 0), "set do_sample");
  check(mlora_generator_params_set_active_adapters(params, adapters, names, NULL, count),
        "mlora_generator_params_set_active_adapters");
  check(mlora_generator_create(model, params, &gen), "mlora_generator_create");
  mlora_generator_params_release(params); /* the generator keeps its params alive */
  check(mlora_generator_append_tokens(gen, prompt, prompt_len), "mlora_generator_append_tokens");
  for (;;) {
    check(mlora_generator_is_done(gen, &done), "mlora_generator_is_done");
    if (done) break;
    check(mlora_generator_generate_next_token(gen), "mlora_generator_generate_next_token");
  }
  check(mlora_generator_get_sequence(gen, 0, seq, sizeof seq / sizeof seq[0], &len), "mlora_generator_get_sequence");
  printf("gen %s:", label);
  for (i = prompt_len; i < len; ++i) printf(" %d", (int)seq[i]);
  printf("\n");
  mlora_generator_release(gen);
}

/* Opens the GenAI model folder, loads its adapter a, and generates with the base model and with a. */
static void generation(const char* dir, const char* max_length, const char* prompt_ids) {
  mlora_model_t* model = NULL;
  mlora_adapters_t* adapters = NULL;
  char path[4096];
  int32_t prompt[256];
  size_t n = 0;
  const char* p = prompt_ids;
  const char* a_name[1] = {"a"};
  char* end = NULL;

  while (*p && n < sizeof prompt / sizeof prompt[0]) {
    long v = strtol(p, &end, 10);
    if (end == p) break;
    prompt[n++] = (int32_t)v;
    p = *end == ',' ? end + 1 : end;
  }
  check(mlora_model_create(dir, NULL, &model), "mlora_model_create (generation)");
  check(mlora_adapters_create(model, &adapters), "mlora_adapters_create (generation)");
  snprintf(path, sizeof path, "%s/adapters/a.onnx_adapter", dir);
  check(mlora_adapters_load(adapters, path, "a", MLORA_LOAD_DEFAULT), "mlora_adapters_load (generation) a");
  printf("generation: %s, prompt of %lu tokens, max_length %s\n", dir, (unsigned long)n, max_length);
  generate(model, adapters, "base", NULL, 0, atof(max_length), prompt, n);
  generate(model, adapters, "a", a_name, 1, atof(max_length), prompt, n);
  check(mlora_adapters_unload(adapters, "a"), "mlora_adapters_unload (generation) a");
  mlora_adapters_release(adapters);
  mlora_model_release(model);
}

int main(int argc, char** argv) {
  mlora_model_t* model = NULL;
  mlora_adapters_t* adapters = NULL;
  char input_name[256], output_name[256];
  size_t len = 0, lora = 0, i;
  const run_case cases[] = {
      {"base", 0, {NULL, NULL}, {0.0f, 0.0f}},
      {"a", 1, {"a", NULL}, {1.0f, 0.0f}},
      {"b", 1, {"b", NULL}, {1.0f, 0.0f}},
      {"mix", 2, {"a", "b"}, {0.5f, 1.5f}},
  };
  if (argc != 4 && argc != 7) {
    fprintf(stderr, "usage: %s MODEL ADAPTER_A ADAPTER_B [GEN_DIR MAX_LENGTH PROMPT_IDS]\n", argv[0]);
    return 2;
  }
  if (mlora_abi_version() != MLORA_ABI_VERSION) {
    fprintf(stderr, "ABI mismatch: library %d, header %d\n", mlora_abi_version(), MLORA_ABI_VERSION);
    return 1;
  }
  printf("multilora sample (C): library %s, ABI %d\n", mlora_version_string(), mlora_abi_version());

  check(mlora_model_create(argv[1], NULL, &model), "mlora_model_create");
  check(mlora_model_input_name(model, 0, input_name, sizeof input_name, &len), "mlora_model_input_name");
  check(mlora_model_output_name(model, 0, output_name, sizeof output_name, &len), "mlora_model_output_name");
  check(mlora_model_lora_count(model, &lora), "mlora_model_lora_count");
  printf("model: input %s, output %s, %lu LoRA inputs\n", input_name, output_name, (unsigned long)lora);

  check(mlora_adapters_create(model, &adapters), "mlora_adapters_create");
  check(mlora_adapters_load(adapters, argv[2], "a", MLORA_LOAD_DEFAULT), "mlora_adapters_load a");
  check(mlora_adapters_load(adapters, argv[3], "b", MLORA_LOAD_DEFAULT), "mlora_adapters_load b");
  printf("loaded: a, b\n");

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) run(model, adapters, input_name, output_name, &cases[i]);

  check(mlora_adapters_unload(adapters, "a"), "mlora_adapters_unload a");
  check(mlora_adapters_unload(adapters, "b"), "mlora_adapters_unload b");
  printf("unloaded: a, b\n");
  mlora_adapters_release(adapters);
  mlora_model_release(model);
  if (argc == 7) generation(argv[4], argv[5], argv[6]);
  return 0;
}
