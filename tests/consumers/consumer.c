/* A program outside the project that uses an installed multilora: built by tests/consumers/cmake (find_package)
 * and with pkg-config by scripts/test_consumers.sh. Prints values the script checks against its own reference:
 *   abi <library's ABI version> <header's MLORA_ABI_VERSION>
 *   missing <status of mlora_model_create on a file that does not exist>
 *   ort <library path> <version>                 or  ort-error <status> <message, newlines as " | ">
 *   lora_inputs <count>                          (only when ONNX Runtime loaded and MODEL is given)
 * Usage: consumer MISSING_FILE [MODEL]   Exit code 0 unless a call that must work failed. */
#include <multilora/multilora.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  char path[4096];
  char version[128];
  size_t path_len = 0;
  size_t version_len = 0;
  mlora_model_t* model = NULL;
  mlora_status_t st;
  size_t count = 0;
  const char* msg;
  if (argc < 2) {
    fprintf(stderr, "usage: consumer MISSING_FILE [MODEL]\n");
    return 2;
  }
  printf("abi %d %d\n", (int)mlora_abi_version(), MLORA_ABI_VERSION);
  printf("missing %d\n", (int)mlora_model_create(argv[1], NULL, &model));
  st = mlora_ort_info(path, sizeof path, &path_len, version, sizeof version, &version_len);
  if (st != MLORA_STATUS_OK) {
    printf("ort-error %d ", (int)st);
    for (msg = mlora_last_error_message(); *msg; ++msg) {
      if (*msg == '\n') {
        fputs(" | ", stdout);
      } else {
        putchar(*msg);
      }
    }
    putchar('\n');
    return 0;
  }
  printf("ort %s %s\n", path, version);
  if (argc > 2) {
    st = mlora_model_create(argv[2], NULL, &model);
    if (st != MLORA_STATUS_OK || mlora_model_lora_count(model, &count) != MLORA_STATUS_OK) {
      fprintf(stderr, "consumer: %s\n", mlora_last_error_message());
      return 1;
    }
    printf("lora_inputs %zu\n", count);
    mlora_model_release(model);
  }
  return 0;
}
