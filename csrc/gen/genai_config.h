// genai_config.json of an ONNX Runtime GenAI model folder: what the generator needs to drive the decoder.
//
// Only the decoder-only layout is read (model.decoder.*); fields multilora does not use are ignored, but
// every field it does use is type-checked, and a wrong one is a FORMAT error naming the file and the key
// ("model.decoder.num_hidden_layers"). Defaults are GenAI's.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

struct OrtSessionOptions;

namespace mlora {

struct ModelOptions;

// Search defaults from the "search" object (names as in GenAI and the C ABI).
struct SearchOptions {
  int32_t max_length = 0;  // 0 = the context length
  int32_t min_length = 0;
  int32_t top_k = 50;  // 0 = no top-k filter
  double top_p = 1.0;  // 1 = no nucleus filter
  double temperature = 1.0;
  double repetition_penalty = 1.0;
  bool do_sample = false;
  int32_t batch_size = 1;
  int64_t random_seed = -1;    // -1 = seeded from std::random_device
  int32_t max_new_tokens = 0;  // 0 = no limit beyond max_length
};

// Session options from model.decoder.session_options (GenAI's names). Zero/empty means "not given".
struct GenaiSessionOptions {
  int32_t intra_op_num_threads = 0;
  int32_t inter_op_num_threads = 0;
  int32_t graph_optimization_level = -1;  // ORT's GraphOptimizationLevel; -1 = ORT's default
  int32_t enable_cpu_mem_arena = -1;      // -1 not given, else 0/1
  int32_t enable_mem_pattern = -1;
  std::vector<std::pair<std::string, std::string>> config_entries;
};

struct GenaiConfig {
  std::string path;  // the genai_config.json file
  std::string dir;   // its folder
  std::string model_type;
  std::string decoder_filename;  // as written (relative to dir unless absolute)
  int32_t context_length = 0;
  int32_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;  // eos_token_id may be one id or a list
  int32_t pad_token_id = 0;
  int32_t bos_token_id = -1;
  int32_t num_hidden_layers = 0;
  int32_t num_attention_heads = 0;
  int32_t num_key_value_heads = 0;
  int32_t head_size = 0;
  int32_t hidden_size = 0;

  // Input/output names; past/present names are printf patterns with one %d (the layer index).
  std::string input_ids = "input_ids";
  std::string attention_mask = "attention_mask";
  std::string position_ids = "position_ids";
  std::string past_key_names = "past_key_values.%d.key";
  std::string past_value_names = "past_key_values.%d.value";
  std::string logits = "logits";
  std::string present_key_names = "present.%d.key";
  std::string present_value_names = "present.%d.value";

  GenaiSessionOptions session;
  SearchOptions search;
  // search.past_present_share_buffer: the decoder's attention can update one preallocated KV buffer in
  // place (GroupQueryAttention). Used by the generator for models without position_ids (see generator.h).
  bool past_present_share_buffer = false;

  // The decoder's .onnx path (dir + filename unless absolute).
  std::string decoder_path() const;
  // A past/present name for one layer.
  static std::string layer_name(const std::string& pattern, int layer);
};

// Reads and validates `path` (a genai_config.json). Throws NOT_FOUND (no file), IO, FORMAT naming the file and
// the offending key.
GenaiConfig parse_genai_config(const std::string& path);

// The same from the file's text (`path` names it in messages and gives the model folder). Throws FORMAT.
// The entry point of the fuzz target tests/fuzz/fuzz_genai_config.cpp.
GenaiConfig parse_genai_config_text(const std::string& text, const std::string& path);

// Applies the config's session options to ORT session options. Explicit ModelOptions win: the config's
// intra-op thread count is used only when options.intra_op_threads is 0, and the config's entries are
// added before the caller's so a caller's entry for the same key is the one ORT keeps. Throws RUNTIME.
void apply_genai_session_options(const GenaiConfig& config, const ModelOptions& options,
                                 OrtSessionOptions* session_options);

}  // namespace mlora
