// libFuzzer target: genai_config.json parsing (parse_genai_config_text) on arbitrary text.
//
// Properties beyond "no crash, no sanitizer report": a failure is an mlora::Error with status FORMAT and
// a message naming the file; a success satisfies the invariants the generator relies on.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gen/genai_config.h"
#include "util/error.h"
#include "util/utf8.h"

namespace {

constexpr const char* kPath = "/fuzz/model/genai_config.json";

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_genai_config: %s: %s\n", what, detail.c_str());
  std::abort();
}

void check(const mlora::GenaiConfig& c) {
  if (c.dir != "/fuzz/model") die("dir", c.dir);
  if (c.decoder_filename.empty()) die("empty decoder filename", c.path);
  if (c.context_length < 1 || c.vocab_size < 1 || c.num_hidden_layers < 1) die("non-positive size", c.path);
  if (c.eos_token_ids.empty()) die("no eos", c.path);
  for (int32_t id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) die("eos outside vocab", std::to_string(id));
  }
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) die("pad outside vocab", std::to_string(c.pad_token_id));
  if (c.head_size < 1 || c.num_key_value_heads < 1) die("head dims", c.path);
  if (c.search.max_length < 1 || c.search.max_length > c.context_length) die("max_length", c.path);
  if (!(c.search.top_p > 0.0 && c.search.top_p <= 1.0) || !(c.search.temperature > 0.0) ||
      !(c.search.repetition_penalty > 0.0)) {
    die("search ranges", c.path);
  }
  // The name patterns are used with layer_name (one %d): exercise them.
  for (const std::string* p : {&c.past_key_names, &c.past_value_names, &c.present_key_names, &c.present_value_names}) {
    const std::string n = mlora::GenaiConfig::layer_name(*p, c.num_hidden_layers - 1);
    if (n.find(std::to_string(c.num_hidden_layers - 1)) == std::string::npos) die("layer_name", *p);
  }
  (void)c.decoder_path();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    check(mlora::parse_genai_config_text(text, kPath));
  } catch (const mlora::Error& e) {
    if (e.status() != MLORA_STATUS_FORMAT) die("unexpected status", std::to_string(e.status()) + ": " + e.what());
    if (std::strstr(e.what(), kPath) == nullptr) die("message does not name the file", e.what());
    if (!mlora::valid_utf8(e.what(), std::strlen(e.what()))) die("message is not UTF-8", e.what());
  }
  return 0;
}
