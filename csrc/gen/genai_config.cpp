#include "gen/genai_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/read_file.h"
#include "model/model.h"
#include "ort/ort.h"
#include "util/error.h"
#include "util/json.h"
#include "util/utf8.h"

namespace mlora {

namespace {

using Json = nlohmann::json;

// Typed access to one JSON object, with messages naming the file and the dotted key.
class Reader {
 public:
  Reader(const std::string& file, const Json& obj, std::string prefix)
      : file_(file), obj_(obj), prefix_(std::move(prefix)) {}

  std::string key(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  bool has(const std::string& name) const { return obj_.contains(name) && !obj_.at(name).is_null(); }

  [[noreturn]] void bad(const std::string& name, const std::string& what) const {
    fail(MLORA_STATUS_FORMAT, "'" + file_ + "': " + key(name) + " " + what);
  }

  Reader object(const std::string& name, bool required) const {
    static const Json kEmpty = Json::object();
    if (!has(name)) {
      if (required) bad(name, "is missing");
      return Reader(file_, kEmpty, key(name));
    }
    if (!obj_.at(name).is_object()) bad(name, "must be an object");
    return Reader(file_, obj_.at(name), key(name));
  }

  int64_t integer(const std::string& name, int64_t fallback, int64_t min, int64_t max, bool required = false) const {
    if (!has(name)) {
      if (required) bad(name, "is missing");
      return fallback;
    }
    return to_integer(name, obj_.at(name), min, max);
  }

  double number(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const Json& v = obj_.at(name);
    if (!v.is_number()) bad(name, "must be a number, got " + std::string(v.type_name()));
    const double d = v.get<double>();
    if (!std::isfinite(d)) bad(name, "must be finite");
    return d;
  }

  bool boolean(const std::string& name, bool fallback) const {
    if (!has(name)) return fallback;
    const Json& v = obj_.at(name);
    if (!v.is_boolean()) bad(name, "must be true or false, got " + std::string(v.type_name()));
    return v.get<bool>();
  }

  std::string string(const std::string& name, const std::string& fallback, bool required = false) const {
    if (!has(name)) {
      if (required) bad(name, "is missing");
      return fallback;
    }
    const Json& v = obj_.at(name);
    if (!v.is_string()) bad(name, "must be a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  }

  // One id or a non-empty list of ids.
  std::vector<int32_t> ids(const std::string& name) const {
    std::vector<int32_t> out;
    if (!has(name)) return out;
    const Json& v = obj_.at(name);
    if (v.is_array()) {
      if (v.empty()) bad(name, "is an empty list");
      for (size_t i = 0; i < v.size(); ++i) {
        out.push_back(static_cast<int32_t>(to_integer(name + "[" + std::to_string(i) + "]", v[i], 0, INT32_MAX)));
      }
    } else {
      out.push_back(static_cast<int32_t>(to_integer(name, v, 0, INT32_MAX)));
    }
    return out;
  }

  const Json& raw(const std::string& name) const { return obj_.at(name); }

 private:
  int64_t to_integer(const std::string& name, const Json& v, int64_t min, int64_t max) const {
    int64_t i = 0;
    if (v.is_number_integer()) {
      i = v.get<int64_t>();
    } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
               std::fabs(v.get<double>()) < 9.0e15) {
      i = static_cast<int64_t>(v.get<double>());
    } else {
      bad(name, "must be an integer, got " + (v.is_number() ? v.dump() : std::string(v.type_name())));
    }
    if (i < min || i > max) {
      bad(name, "is " + std::to_string(i) + ", outside " + std::to_string(min) + ".." + std::to_string(max));
    }
    return i;
  }

  const std::string& file_;
  const Json& obj_;
  std::string prefix_;
};

// A name pattern must contain exactly one %d and no other conversion.
void check_pattern(const Reader& r, const std::string& name, const std::string& pattern) {
  size_t count = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%') continue;
    if (i + 1 < pattern.size() && pattern[i + 1] == 'd') {
      ++count;
      ++i;
    } else {
      r.bad(name, "('" + pattern + "') may contain no '%' but the one '%d'");
    }
  }
  if (count != 1) r.bad(name, "('" + pattern + "') must contain '%d' exactly once (the layer index)");
}

int32_t graph_level(const Reader& r, const std::string& name) {
  const Json& v = r.raw(name);
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i == 0 || i == 1 || i == 2 || i == 99) return static_cast<int32_t>(i);
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "ORT_DISABLE_ALL") return ORT_DISABLE_ALL;
    if (s == "ORT_ENABLE_BASIC") return ORT_ENABLE_BASIC;
    if (s == "ORT_ENABLE_EXTENDED") return ORT_ENABLE_EXTENDED;
    if (s == "ORT_ENABLE_ALL") return ORT_ENABLE_ALL;
  }
  r.bad(name, "must be one of ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_ALL, got " + v.dump());
}

}  // namespace

std::string GenaiConfig::decoder_path() const {
  if (!decoder_filename.empty() && decoder_filename[0] == '/') return decoder_filename;
  return dir + "/" + decoder_filename;
}

std::string GenaiConfig::layer_name(const std::string& pattern, int layer) {
  std::string out;
  const size_t at = pattern.find("%d");
  out.append(pattern, 0, at);
  out += std::to_string(layer);
  out.append(pattern, at + 2, std::string::npos);
  return out;
}

GenaiConfig parse_genai_config(const std::string& path) {
  // Non-blocking open, regular files only, size cap: a FIFO, a directory or /dev/zero is an IO error.
  return parse_genai_config_text(read_small_file(path), path);
}

GenaiConfig parse_genai_config_text(const std::string& text, const std::string& path) {
  const Json root = parse_json(text, "'" + path + "'");
  if (!root.is_object()) fail(MLORA_STATUS_FORMAT, "'" + path + "' must hold a JSON object");

  GenaiConfig c;
  c.path = path;
  const auto slash = path.find_last_of('/');
  c.dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));

  const Reader top(path, root, "");
  const Reader model = top.object("model", true);
  c.model_type = model.string("type", "");
  c.context_length = static_cast<int32_t>(model.integer("context_length", 0, 1, INT32_MAX, true));
  c.vocab_size = static_cast<int32_t>(model.integer("vocab_size", 0, 1, INT32_MAX, true));
  c.eos_token_ids = model.ids("eos_token_id");
  if (c.eos_token_ids.empty()) model.bad("eos_token_id", "is missing");
  c.pad_token_id = static_cast<int32_t>(model.integer("pad_token_id", c.eos_token_ids[0], 0, INT32_MAX));
  c.bos_token_id = static_cast<int32_t>(model.integer("bos_token_id", -1, -1, INT32_MAX));
  for (int32_t id : c.eos_token_ids) {
    if (id >= c.vocab_size)
      model.bad("eos_token_id", std::to_string(id) + " is not below vocab_size " + std::to_string(c.vocab_size));
  }
  if (c.pad_token_id >= c.vocab_size) {
    model.bad("pad_token_id",
              std::to_string(c.pad_token_id) + " is not below vocab_size " + std::to_string(c.vocab_size));
  }

  const Reader decoder = model.object("decoder", true);
  c.decoder_filename = decoder.string("filename", "", true);
  if (c.decoder_filename.empty()) decoder.bad("filename", "is empty");
  if (c.decoder_filename.find('\0') != std::string::npos) decoder.bad("filename", "contains a NUL byte");
  c.num_hidden_layers = static_cast<int32_t>(decoder.integer("num_hidden_layers", 0, 1, 100000, true));
  c.num_attention_heads = static_cast<int32_t>(decoder.integer("num_attention_heads", 0, 1, 100000));
  c.num_key_value_heads =
      static_cast<int32_t>(decoder.integer("num_key_value_heads", c.num_attention_heads, 1, 100000));
  c.hidden_size = static_cast<int32_t>(decoder.integer("hidden_size", 0, 1, INT32_MAX));
  int64_t head_default = 0;
  if (c.hidden_size && c.num_attention_heads) head_default = c.hidden_size / c.num_attention_heads;
  c.head_size = static_cast<int32_t>(decoder.integer("head_size", head_default, 1, 100000));
  if (c.num_key_value_heads == 0) decoder.bad("num_key_value_heads", "is missing (nor is num_attention_heads given)");
  if (c.head_size == 0) decoder.bad("head_size", "is missing (nor are hidden_size and num_attention_heads given)");

  const Reader inputs = decoder.object("inputs", false);
  c.input_ids = inputs.string("input_ids", c.input_ids);
  c.attention_mask = inputs.string("attention_mask", c.attention_mask);
  c.position_ids = inputs.string("position_ids", c.position_ids);
  c.past_key_names = inputs.string("past_key_names", c.past_key_names);
  c.past_value_names = inputs.string("past_value_names", c.past_value_names);
  check_pattern(inputs, "past_key_names", c.past_key_names);
  check_pattern(inputs, "past_value_names", c.past_value_names);
  const Reader outputs = decoder.object("outputs", false);
  c.logits = outputs.string("logits", c.logits);
  c.present_key_names = outputs.string("present_key_names", c.present_key_names);
  c.present_value_names = outputs.string("present_value_names", c.present_value_names);
  check_pattern(outputs, "present_key_names", c.present_key_names);
  check_pattern(outputs, "present_value_names", c.present_value_names);

  const Reader so = decoder.object("session_options", false);
  c.session.intra_op_num_threads = static_cast<int32_t>(so.integer("intra_op_num_threads", 0, 0, 4096));
  c.session.inter_op_num_threads = static_cast<int32_t>(so.integer("inter_op_num_threads", 0, 0, 4096));
  if (so.has("graph_optimization_level"))
    c.session.graph_optimization_level = graph_level(so, "graph_optimization_level");
  if (so.has("enable_cpu_mem_arena")) c.session.enable_cpu_mem_arena = so.boolean("enable_cpu_mem_arena", true);
  if (so.has("enable_mem_pattern")) c.session.enable_mem_pattern = so.boolean("enable_mem_pattern", true);
  if (so.has("config_entries")) {
    const Reader entries = so.object("config_entries", false);
    for (auto it = so.raw("config_entries").begin(); it != so.raw("config_entries").end(); ++it) {
      c.session.config_entries.emplace_back(it.key(), entries.string(it.key(), ""));
    }
  }
  if (so.has("custom_ops_library")) {
    so.bad("custom_ops_library", "is not supported by multilora (only ONNX Runtime's built-in operators)");
  }

  const Reader search = top.object("search", false);
  SearchOptions& s = c.search;
  s.max_length = static_cast<int32_t>(search.integer("max_length", c.context_length, 1, INT32_MAX));
  if (s.max_length > c.context_length) {
    search.bad("max_length",
               std::to_string(s.max_length) + " exceeds model.context_length " + std::to_string(c.context_length));
  }
  s.min_length = static_cast<int32_t>(search.integer("min_length", 0, 0, INT32_MAX));
  s.top_k = static_cast<int32_t>(search.integer("top_k", 50, 0, INT32_MAX));
  s.top_p = search.number("top_p", 1.0);
  if (!(s.top_p > 0.0 && s.top_p <= 1.0)) search.bad("top_p", "must be in (0, 1]");
  s.temperature = search.number("temperature", 1.0);
  if (!(s.temperature > 0.0)) search.bad("temperature", "must be > 0");
  s.repetition_penalty = search.number("repetition_penalty", 1.0);
  if (!(s.repetition_penalty > 0.0)) search.bad("repetition_penalty", "must be > 0");
  s.do_sample = search.boolean("do_sample", false);
  c.past_present_share_buffer = search.boolean("past_present_share_buffer", false);
  s.batch_size = 1;
  s.random_seed = search.integer("random_seed", -1, -1, (int64_t{1} << 53));
  if (search.integer("num_beams", 1, 1, INT32_MAX) != 1) {
    search.bad("num_beams", "must be 1: multilora does greedy search and sampling, not beam search");
  }
  return c;
}

void apply_genai_session_options(const GenaiConfig& config, const ModelOptions& options,
                                 OrtSessionOptions* session_options) {
  const OrtApi& api = ort();
  const GenaiSessionOptions& s = config.session;
  const std::string context = " (from '" + config.path + "')";
  if (options.intra_op_threads == 0 && s.intra_op_num_threads > 0) {
    ort_check(api.SetIntraOpNumThreads(session_options, s.intra_op_num_threads), "setting intra-op threads" + context);
  }
  if (s.inter_op_num_threads > 0) {
    ort_check(api.SetInterOpNumThreads(session_options, s.inter_op_num_threads), "setting inter-op threads" + context);
  }
  if (s.graph_optimization_level >= 0) {
    ort_check(api.SetSessionGraphOptimizationLevel(session_options,
                                                   static_cast<GraphOptimizationLevel>(s.graph_optimization_level)),
              "setting the graph optimization level" + context);
  }
  if (s.enable_cpu_mem_arena == 0) {
    ort_check(api.DisableCpuMemArena(session_options), "disabling the CPU memory arena" + context);
  }
  if (s.enable_mem_pattern == 0) {
    ort_check(api.DisableMemPattern(session_options), "disabling memory patterns" + context);
  }
  for (const auto& [key, value] : s.config_entries) {
    ort_check(api.AddSessionConfigEntry(session_options, key.c_str(), value.c_str()),
              "setting session config entry '" + key + "'" + context);
  }
}

}  // namespace mlora
