/* multilora sample host in C: load a model, load two adapters, run the base model, each adapter and a
 * weighted mix, print a few output numbers per case, unload.
 *
 * Build: cc -std=c99 -I include bindings/samples/c/sample.c -L build -lmultilora -o sample_c
 * Run:   LD_LIBRARY_PATH=build ./sample_c MODEL.onnx ADAPTER_A.onnx_adapter ADAPTER_B.onnx_adapter
 *        (MULTILORA_ORT_LIBRARY may name libonnxruntime.so; see multilora.h)
 * The model's first input is fed token ids 1..5 as int64 [1, 5]; the first output is printed.
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

/* Generation (GeneratorParams + Generator on a GenAI model folder) will be shown here:
 * static void generate(const mlora_model_t* model, const mlora_adapters_t* adapters) { ... } */

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
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL ADAPTER_A ADAPTER_B\n", argv[0]);
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
  return 0;
}
