#include "peft/peft_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "io/read_file.h"
#include "peft/safetensors.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/json.h"
#include "util/utf8.h"

namespace mlora {
namespace peft {

namespace {

using nlohmann::json;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string join_list(const std::vector<std::string>& v, size_t limit = 6) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < limit; ++i) out += (i ? ", '" : "'") + v[i] + "'";
  if (v.size() > limit) out += ", ... (" + std::to_string(v.size()) + " in all)";
  return v.empty() ? "(none)" : out;
}

// A projection address: layer index (-1 if none) + module path after it with self_attn spelled attn.
struct Address {
  int layer = -1;
  std::string prefix;  // the tokens before the layer index, e.g. "model.layers"
  std::string path;    // e.g. "attn.q_proj"
  std::string leaf;    // e.g. "q_proj"
  char half = 0;       // 'A' or 'B'
};

// Spellings of the same block across exporters: Hugging Face says self_attn, model builders say attn.
std::string normalise_token(const std::string& t) {
  if (t == "self_attn" || t == "attention" || t == "self_attention") return "attn";
  if (t == "feed_forward") return "mlp";
  return t;
}

// Address of module tokens [0, end): the first all-digit token after a non-digit one is the layer index.
Address address_of(const std::vector<std::string>& tok, size_t end) {
  Address a;
  size_t start = 0;
  for (size_t i = 1; i < end; ++i) {
    if (all_digits(tok[i])) {
      a.layer = std::stoi(tok[i]);
      start = i + 1;
      for (size_t j = 0; j < i; ++j) a.prefix += (j ? "." : "") + tok[j];
      break;
    }
  }
  for (size_t i = start; i < end; ++i) a.path += (a.path.empty() ? "" : ".") + normalise_token(tok[i]);
  a.leaf = end > 0 ? tok[end - 1] : "";
  return a;
}

std::string key_of(const Address& a) { return std::to_string(a.layer) + "|" + a.path + "|" + a.half; }
std::string leaf_key_of(const Address& a) { return std::to_string(a.layer) + "|" + a.leaf + "|" + a.half; }

// Model LoRA input name -> address ("model.layers.3.attn.q_proj.lora_A.MatMul.weight").
bool model_address(const std::string& name, Address& out) {
  const auto tok = split(name, '.');
  for (size_t i = 0; i < tok.size(); ++i) {
    if (tok[i] == "lora_A" || tok[i] == "lora_B") {
      out = address_of(tok, i);
      out.half = tok[i].back();
      return true;
    }
  }
  return false;
}

}  // namespace

LoraNameResolver::LoraNameResolver(const Model& model) {
  for (const LoraInput& in : model.lora_inputs()) {
    if (in.quantized()) continue;  // MatMulNBits inputs take the quantizer's tensors, not float LoRA weights
    Address a;
    if (!model_address(in.name, a)) continue;
    by_key_[key_of(a)].push_back(&in);
    // A model whose names carry no block ("model.layers.0.q_proj.lora_A...") is matched by the leaf module
    // name alone; otherwise the block must agree too (never map cross_attn.q_proj onto attn.q_proj).
    if (a.path == a.leaf) by_leaf_[leaf_key_of(a)].push_back(&in);
  }
}

LoraNameResolver::Match LoraNameResolver::resolve(const std::string& name) const {
  Match m;
  const auto tok = split(name, '.');
  size_t pos = tok.size();
  for (size_t i = 0; i < tok.size(); ++i) {
    if (tok[i] == "lora_A" || tok[i] == "lora_B") pos = i;
  }
  // "<module>.lora_A.weight" (PEFT's saved form, olive convert-adapters), tolerating
  // "<module>.lora_A.<adapter name or MatMul>.weight".
  const bool is_weight = pos < tok.size() && tok.back() == "weight" && (tok.size() - pos == 2 || tok.size() - pos == 3);
  if (!is_weight) return m;
  size_t first = 0;  // strip PEFT's wrapper prefix "base_model.model."
  if (tok.size() > 2 && tok[0] == "base_model" && tok[1] == "model") first = 2;
  std::vector<std::string> mod_tok(tok.begin() + static_cast<long>(first), tok.begin() + static_cast<long>(pos));
  Address a = address_of(mod_tok, mod_tok.size());
  a.half = tok[pos].back();
  m.weight = true;
  m.half = a.half;
  m.prefix = a.prefix;
  for (const auto& t : mod_tok) m.module += (m.module.empty() ? "" : ".") + t;
  auto exact = by_key_.find(key_of(a));
  if (exact != by_key_.end()) {
    if (exact->second.size() == 1) {
      m.input = exact->second.front();
    } else {
      m.ambiguous = true;
    }
    return m;
  }
  auto leaf = by_leaf_.find(leaf_key_of(a));
  if (leaf != by_leaf_.end()) {
    if (leaf->second.size() == 1) {
      m.input = leaf->second.front();
    } else {
      m.ambiguous = true;
    }
  }
  return m;
}

std::shared_ptr<const Adapter> resolve_names(std::shared_ptr<const Adapter> adapter, const Model& model) {
  const auto& params = adapter->params();
  if (std::all_of(params.begin(), params.end(), [&](const Param& p) { return model.find_lora(p.name); })) {
    return adapter;
  }
  const LoraNameResolver resolver(model);
  std::vector<std::string> names;
  std::map<std::string, std::string> taken;  // model input -> the parameter resolved to it
  std::vector<std::string> clashes;
  bool changed = false;
  for (const Param& p : params) {
    const std::string name(p.name);
    std::string target = name;
    if (!model.find_lora(name)) {
      const LoraNameResolver::Match m = resolver.resolve(name);
      // Files are held to the model's own prefix ("model.layers"): only the spellings after it may differ.
      Address target_address;
      if (m.input && model_address(m.input->name, target_address) && target_address.prefix == m.prefix) {
        target = m.input->name;
        changed = true;
      }
      // Unresolved names are kept: validation names them with the model's LoRA inputs.
    }
    auto [it, fresh] = taken.emplace(target, name);
    if (!fresh) clashes.push_back("'" + name + "' and '" + it->second + "' both resolve to '" + target + "'");
    names.push_back(target);
  }
  if (!clashes.empty()) {
    std::string msg =
        "adapter '" + adapter->source() + "': parameter names resolve ambiguously to model '" + model.path() + "': ";
    for (size_t i = 0; i < clashes.size(); ++i) msg += (i ? "; " : "") + clashes[i];
    fail(MLORA_STATUS_FORMAT, msg);
  }
  return changed ? Adapter::renamed(std::move(adapter), names) : adapter;
}

namespace {

bool exists(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0;
}

double read_element(const std::string& dtype, const uint8_t* p, size_t i) {
  if (dtype == "F32") {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  if (dtype == "F64") {
    double d;
    std::memcpy(&d, p + 8 * i, 8);
    return d;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return dtype == "F16" ? half_to_float(h) : bfloat16_to_float(h);
}

// Element i of a model-dtype buffer written by write_element, as a double.
double read_back(int32_t dtype, const uint8_t* p, size_t i) {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case MLORA_DTYPE_FLOAT64: {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      return d;
    }
    default: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return dtype == MLORA_DTYPE_FLOAT16 ? half_to_float(h) : bfloat16_to_float(h);
    }
  }
}

void write_element(int32_t dtype, uint8_t* p, size_t i, double v) {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32: {
      const float f = static_cast<float>(v);
      std::memcpy(p + 4 * i, &f, 4);
      break;
    }
    case MLORA_DTYPE_FLOAT64:
      std::memcpy(p + 8 * i, &v, 8);
      break;
    case MLORA_DTYPE_FLOAT16: {
      const uint16_t h = float_to_half(static_cast<float>(v));
      std::memcpy(p + 2 * i, &h, 2);
      break;
    }
    default: {
      const uint16_t b = float_to_bfloat16(static_cast<float>(v));
      std::memcpy(p + 2 * i, &b, 2);
    }
  }
}

// PEFT's per-module override lookup (peft.utils.other.get_pattern_key): the first pattern key K for which
// the module name matches the regex "(.*\.)?(K)$".
const json* pattern_value(const json& patterns, const std::string& module, const std::string& who) {
  if (!patterns.is_object()) return nullptr;
  for (auto it = patterns.begin(); it != patterns.end(); ++it) {
    try {
      // Some PEFT versions key patterns by the wrapped name ("base_model.model.<module>"): accept both.
      const std::regex re("(.*\\.)?(" + it.key() + ")");
      if (std::regex_match(module, re) || std::regex_match("base_model.model." + module, re)) return &*it;
    } catch (const std::regex_error&) {
      fail(MLORA_STATUS_FORMAT, who + ": pattern '" + it.key() + "' is not a valid regular expression");
    }
  }
  return nullptr;
}

// PEFT's module selection (peft.tuners.tuners_utils.check_target_module_exists): a string is a regular
// expression the whole module name must match ("all-linear" selects every linear layer); a list selects the
// modules named like an entry or ending in "." + entry. Absent or null selects everything (PEFT writes the
// list it resolved when it saves, so a saved folder names its modules).
bool peft_selects(const json& spec, const std::string& module, bool all_linear_ok, const std::string& who,
                  const char* key) {
  if (spec.is_string()) {
    const std::string pattern = spec.get<std::string>();
    if (all_linear_ok && pattern == "all-linear") return true;
    try {
      return std::regex_match(module, std::regex(pattern));
    } catch (const std::regex_error&) {
      fail(MLORA_STATUS_FORMAT, who + ": " + key + " '" + pattern + "' is not a valid regular expression");
    }
  }
  if (spec.is_array()) {
    for (const json& e : spec) {
      if (!e.is_string()) fail(MLORA_STATUS_FORMAT, who + ": " + key + " " + spec.dump() + " holds a non-string");
      const std::string t = e.get<std::string>();
      if (module == t || (module.size() > t.size() && module.compare(module.size() - t.size(), t.size(), t) == 0 &&
                          module[module.size() - t.size() - 1] == '.')) {
        return true;
      }
    }
    return false;
  }
  if (spec.is_null()) return all_linear_ok;
  fail(MLORA_STATUS_FORMAT, who + ": " + key + " " + spec.dump() + " is neither a string nor a list of strings");
}

struct Half {
  const StTensor* t = nullptr;
  std::string module;  // PEFT module name ("model.layers.0.self_attn.q_proj")
};

// adapter_config.json's settings; `problems` lists everything multilora cannot express.
struct PeftConfig {
  std::string who;  // "'<dir>/adapter_config.json'" for messages
  std::vector<std::string> problems;
  double r_default = 8, alpha_default = 8;
  bool rslora = false;
  json rank_pattern, alpha_pattern;
  json target_modules, exclude_modules;  // null when absent
};

// Checks the folder's two files and parses adapter_config.json (a JSON object).
json read_config(const std::string& dir, const std::string& who, const std::string& config_path,
                 const std::string& weights_path) {
  if (!exists(config_path)) {
    // IO like any other non-file path (what loading a directory gave before PEFT folders existed).
    fail(MLORA_STATUS_IO, "cannot load '" + dir +
                              "': it is a directory, and not a PEFT LoRA folder (no "
                              "adapter_config.json); adapters are .onnx_adapter files or PEFT folders");
  }
  if (!exists(weights_path)) {
    fail(MLORA_STATUS_NOT_FOUND,
         who + ": no adapter_model.safetensors" +
             (exists(dir + "/adapter_model.bin")
                  ? " (adapter_model.bin is a pickle, which multilora does not read; re-save with "
                    "save_pretrained(..., safe_serialization=True))"
                  : std::string()));
  }
  // Non-blocking open, regular files only, size cap: a FIFO, a directory or /dev/zero is an IO error.
  const json cfg = parse_json(read_small_file(config_path), "'" + config_path + "'");
  if (!cfg.is_object()) fail(MLORA_STATUS_FORMAT, "'" + config_path + "' is not a JSON object");
  return cfg;
}

// ---- configuration: everything we cannot express is an error that names it --------------------------
PeftConfig read_settings(const json& cfg, const std::string& cwho) {
  PeftConfig c;
  c.who = cwho;
  std::vector<std::string>& problems = c.problems;
  auto truthy = [&](const char* key) {
    if (!cfg.contains(key)) return false;
    const json& v = cfg[key];
    if (v.is_null()) return false;
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_array() || v.is_object() || v.is_string()) return !v.empty() && v != "";
    return true;
  };
  if (cfg.contains("peft_type") && cfg["peft_type"].is_string() && cfg["peft_type"] != "LORA") {
    problems.push_back("peft_type " + cfg["peft_type"].get<std::string>() + " (only LORA is supported)");
  }
  if (truthy("use_dora")) problems.push_back("use_dora (DoRA needs the base weight's norm at run time)");
  if (truthy("modules_to_save")) {
    problems.push_back("modules_to_save " + cfg["modules_to_save"].dump() +
                       " (fully trained modules replace base weights, not LoRA inputs)");
  }
  if (truthy("lora_bias")) problems.push_back("lora_bias (a bias on lora_B)");
  if (cfg.contains("bias") && cfg["bias"].is_string() && cfg["bias"] != "none") {
    problems.push_back("bias '" + cfg["bias"].get<std::string>() + "' (trained biases change base weights)");
  }
  if (truthy("layer_replication")) problems.push_back("layer_replication");
  if (truthy("trainable_token_indices")) problems.push_back("trainable_token_indices (trained embedding rows)");
  if (truthy("target_parameters")) problems.push_back("target_parameters (LoRA on bare parameters)");
  if (truthy("alora_invocation_tokens")) problems.push_back("alora_invocation_tokens (activated LoRA)");
  if (truthy("use_qalora")) problems.push_back("use_qalora");
  if (truthy("use_bdlora")) problems.push_back("use_bdlora");
  auto number = [&](const char* key, double dflt) {
    if (!cfg.contains(key) || cfg[key].is_null()) return dflt;
    if (!cfg[key].is_number()) fail(MLORA_STATUS_FORMAT, cwho + ": " + key + " is not a number");
    return cfg[key].get<double>();
  };
  c.r_default = number("r", 8);
  c.alpha_default = number("lora_alpha", 8);
  c.rslora = cfg.contains("use_rslora") && cfg["use_rslora"].is_boolean() && cfg["use_rslora"].get<bool>();
  c.rank_pattern = cfg.value("rank_pattern", json::object());
  c.alpha_pattern = cfg.value("alpha_pattern", json::object());
  c.target_modules = cfg.contains("target_modules") ? cfg["target_modules"] : json();
  c.exclude_modules = cfg.contains("exclude_modules") ? cfg["exclude_modules"] : json();
  return c;
}

// ---- tensors -> model inputs -------------------------------------------------------------------------
struct Matched {
  std::map<const LoraInput*, Half> halves;                                       // model input -> PEFT tensor
  std::map<std::string, std::pair<const LoraInput*, const LoraInput*>> modules;  // PEFT module -> (A, B)
};

// Matches every tensor to a model input; fails listing every problem at once (unsupported settings in `c`,
// unsupported tensors, tensors that match nothing).
Matched match_tensors(const SafetensorsFile& st, const LoraNameResolver& resolver, const PeftConfig& c,
                      const Model& model, const std::string& who) {
  std::vector<std::string> unsupported, unmatched;
  std::map<std::string, bool> selected;  // PEFT module -> whether target_modules / exclude_modules select it
  Matched out;
  auto& halves = out.halves;
  auto& modules = out.modules;
  const std::vector<std::string>& problems = c.problems;
  for (const StTensor& t : st.tensors()) {
    auto tok = split(t.name, '.');
    auto has = [&](const char* s) { return t.name.find(s) != std::string::npos; };
    if (has("lora_embedding_A") || has("lora_embedding_B")) {
      unsupported.push_back("'" + t.name + "' (embedding LoRA)");
      continue;
    }
    if (has("lora_magnitude_vector")) {
      unsupported.push_back("'" + t.name + "' (DoRA magnitude vector)");
      continue;
    }
    const LoraNameResolver::Match match = resolver.resolve(t.name);
    if (!match.weight) {
      const bool lora = std::find(tok.begin(), tok.end(), "lora_A") != tok.end() ||
                        std::find(tok.begin(), tok.end(), "lora_B") != tok.end();
      if (lora && tok.back() == "bias") {
        unsupported.push_back("'" + t.name + "' (LoRA bias)");
      } else {
        unsupported.push_back("'" + t.name + "' (not a LoRA A/B weight; e.g. a fully trained module)");
      }
      continue;
    }
    const std::string& module = match.module;
    // A tensor of a module PEFT would not wrap is not applied by PEFT: refuse it rather than differ.
    auto sel = selected.find(module);
    if (sel == selected.end()) {
      const bool in =
          peft_selects(c.target_modules, module, true, c.who, "target_modules") &&
          !(c.exclude_modules.is_null() ? false
                                        : peft_selects(c.exclude_modules, module, false, c.who, "exclude_modules"));
      sel = selected.emplace(module, in).first;
      if (!in) {
        unsupported.push_back("module '" + module + "' (tensor '" + t.name + "'; " +
                              (peft_selects(c.target_modules, module, true, c.who, "target_modules")
                                   ? "excluded by exclude_modules " + c.exclude_modules.dump()
                                   : "not selected by target_modules " + c.target_modules.dump()) +
                              ", so PEFT does not apply it)");
      }
    }
    if (!sel->second) continue;

    const LoraInput* target = match.input;
    if (!target) {
      unmatched.push_back(match.ambiguous ? t.name + "' (ambiguous: several LoRA inputs fit)" : t.name);
      continue;
    }
    auto prev = halves.find(target);
    if (prev != halves.end()) {
      unsupported.push_back("'" + t.name + "' (resolves to '" + target->name + "' like '" + prev->second.t->name +
                            "')");
      continue;
    }
    halves[target] = Half{&t, module};
    auto& m = modules[module];
    (match.half == 'A' ? m.first : m.second) = target;
  }
  // Every problem at once: unsupported settings, unsupported tensors, tensors that match nothing.
  if (!problems.empty() || !unsupported.empty() || !unmatched.empty()) {
    std::string msg = who + ":";
    if (!problems.empty()) {
      msg += " unsupported PEFT features in adapter_config.json:";
      for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : " ") + problems[i];
      msg += ";";
    }
    if (!unsupported.empty()) {
      msg += " unsupported tensors:";
      for (size_t i = 0; i < unsupported.size(); ++i) msg += (i ? ", " : " ") + unsupported[i];
      msg += ";";
    }
    if (!unmatched.empty()) {
      std::vector<std::string> known;
      for (const auto& in : model.lora_inputs()) known.push_back(in.name);
      msg += " tensors matching no LoRA input of model '" + model.path() + "': " + join_list(unmatched, 1000) +
             "; its LoRA inputs are " + join_list(known);
      if (model.quantized_lora()) {
        msg +=
            " (its LoRA pairs are quantized, MatMulNBits: load Olive's int4 adapter made for it, or prepare the "
            "model with `multilora prepare-batching`, whose float LoRA inputs take PEFT folders);";
      }
    }
    msg.pop_back();
    fail(problems.empty() && unsupported.empty() ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_FORMAT, msg);
  }
  return out;
}

// The converted parameters, in the order modules were converted; `slot` finds a model input's entry.
struct Converted {
  std::vector<std::string> names;
  std::vector<int32_t> dtypes;
  std::vector<std::vector<int64_t>> dims;
  std::vector<std::vector<uint8_t>> bytes;
  std::map<const LoraInput*, size_t> slot;
};

// ---- per module: ranks, scale, transpose + convert ---------------------------------------------------
void convert_module(const std::string& module, const LoraInput* ia, const LoraInput* ib, const Matched& m,
                    const PeftConfig& c, const Model& model, const std::string& who, const std::string& swho,
                    Converted& out) {
  if (!ia || !ib) {
    const auto& present = m.halves.at(ia ? ia : ib);
    fail(MLORA_STATUS_FORMAT, swho + ": tensor '" + present.t->name + "' has no " + (ia ? "lora_B" : "lora_A") +
                                  " partner for module '" + module + "'");
  }
  const StTensor& ta = *m.halves.at(ia).t;
  const StTensor& tb = *m.halves.at(ib).t;
  for (const StTensor* t : {&ta, &tb}) {
    if (t->dtype != "F32" && t->dtype != "F16" && t->dtype != "BF16" && t->dtype != "F64") {
      fail(MLORA_STATUS_TYPE_MISMATCH,
           swho + ": tensor '" + t->name + "' has dtype " + t->dtype + "; LoRA weights must be F32, F16, BF16 or F64");
    }
    if (t->shape.size() != 2) {
      fail(MLORA_STATUS_SHAPE_MISMATCH,
           swho + ": tensor '" + t->name + "' has shape " + shape_str(t->shape) + "; LoRA weights are 2-D");
    }
  }
  const LoraInput* ins[2] = {ia, ib};
  for (const LoraInput* in : ins) {
    if (!dtype_is_float(in->dtype)) {
      fail(MLORA_STATUS_TYPE_MISMATCH, "model '" + model.path() + "': LoRA input '" + in->name + "' is " +
                                           dtype_name(in->dtype) + ", not a floating-point type");
    }
  }
  const int64_t r = ta.shape[0], in_f = ta.shape[1], out_f = tb.shape[0];
  if (tb.shape[1] != r) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, swho + ": '" + ta.name + "' " + shape_str(ta.shape) + " has rank " +
                                          std::to_string(r) + " but '" + tb.name + "' " + shape_str(tb.shape) +
                                          " has rank " + std::to_string(tb.shape[1]));
  }
  if (ia->fixed_dim() >= 0 && ia->fixed_dim() != in_f) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, swho + ": '" + ta.name + "' " + shape_str(ta.shape) + " has " +
                                          std::to_string(in_f) + " in features; model input '" + ia->name + "' has " +
                                          std::to_string(ia->fixed_dim()));
  }
  if (ib->fixed_dim() >= 0 && ib->fixed_dim() != out_f) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, swho + ": '" + tb.name + "' " + shape_str(tb.shape) + " has " +
                                          std::to_string(out_f) + " out features; model input '" + ib->name + "' has " +
                                          std::to_string(ib->fixed_dim()));
  }
  double r_cfg = c.r_default, alpha = c.alpha_default;
  if (const json* v = pattern_value(c.rank_pattern, module, c.who + " rank_pattern")) {
    if (!v->is_number()) fail(MLORA_STATUS_FORMAT, c.who + ": rank_pattern value for '" + module + "' is not a number");
    r_cfg = v->get<double>();
  }
  if (const json* v = pattern_value(c.alpha_pattern, module, c.who + " alpha_pattern")) {
    if (!v->is_number())
      fail(MLORA_STATUS_FORMAT, c.who + ": alpha_pattern value for '" + module + "' is not a number");
    alpha = v->get<double>();
  }
  if (r_cfg != static_cast<double>(r)) {
    fail(MLORA_STATUS_FORMAT, who + ": module '" + module + "' has rank " + std::to_string(r) +
                                  " in its tensors but the config says r = " + std::to_string(r_cfg) +
                                  " (r / rank_pattern); the LoRA scale would be wrong");
  }
  const double scale = r == 0 ? 0.0 : (c.rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r);

  // A [r, in] -> [in, r];  B [out, r] -> [r, out] * scale.
  auto emit = [&](const LoraInput* in, const StTensor& t, int64_t rows, int64_t cols, double s) {
    auto& [names, dtypes, dims, bytes, slot] = out;
    std::vector<uint8_t> buf(static_cast<size_t>(rows * cols) * dtype_size(in->dtype));
    // out[i, j] = t[j, i] * s   (out is [rows, cols], t is [cols, rows])
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const double v = read_element(t.dtype, t.data, static_cast<size_t>(j * rows + i));
        const size_t k = static_cast<size_t>(i * cols + j);
        write_element(in->dtype, buf.data(), k, v * s);
        // A scale (lora_alpha / r) that overflows the model's dtype would make every output NaN silently.
        if (std::isfinite(v) && !std::isfinite(read_back(in->dtype, buf.data(), k))) {
          fail(MLORA_STATUS_FORMAT, c.who + ": the LoRA scale " + std::to_string(s) + " (lora_alpha " +
                                        std::to_string(alpha) + " / r" + (c.rslora ? " with rsLoRA" : "") +
                                        ") times tensor '" + t.name + "' overflows " + dtype_name(in->dtype) +
                                        " for model input '" + in->name + "'");
        }
      }
    }
    slot[in] = names.size();
    names.push_back(in->name);
    dtypes.push_back(in->dtype);
    dims.push_back({rows, cols});
    bytes.push_back(std::move(buf));
  };
  emit(ia, ta, in_f, r, 1.0);
  emit(ib, tb, r, out_f, scale);
}

}  // namespace

namespace {

std::shared_ptr<const Adapter> load_folder_unescaped(const std::string& dir, const Model& model) {
  const std::string who = "PEFT folder '" + dir + "'";
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  const json cfg = read_config(dir, who, config_path, weights_path);
  const PeftConfig config = read_settings(cfg, "'" + config_path + "'");
  const LoraNameResolver resolver(model);  // the model's LoRA inputs by address
  const SafetensorsFile st = SafetensorsFile::open(weights_path);
  const std::string swho = "'" + weights_path + "'";
  const Matched matched = match_tensors(st, resolver, config, model, who);
  if (matched.modules.empty()) fail(MLORA_STATUS_FORMAT, who + ": adapter_model.safetensors has no LoRA tensors");
  Converted converted;
  for (const auto& kv : matched.modules) {
    convert_module(kv.first, kv.second.first, kv.second.second, matched, config, model, who, swho, converted);
  }

  // Model input order, so the adapter lists parameters like the model does.
  std::vector<ParamView> views;
  for (const LoraInput& in : model.lora_inputs()) {
    auto it = converted.slot.find(&in);
    if (it == converted.slot.end()) continue;
    const size_t k = it->second;
    views.push_back(ParamView{converted.names[k], converted.dtypes[k], converted.dims[k], converted.bytes[k].data(),
                              converted.bytes[k].size()});
  }
  const std::vector<uint8_t> buffer = serialize_adapter(views, 0, model.lora_fingerprint());
  converted.bytes.clear();
  return Adapter::open_memory(buffer.data(), buffer.size(), dir);
}

}  // namespace

std::shared_ptr<const Adapter> load_folder(const std::string& dir, const Model& model) {
  try {
    return load_folder_unescaped(dir, model);
  } catch (const Error& e) {
    // Messages quote tensor names and config keys from the files: control characters and invalid UTF-8 as
    // \xNN (a message is one line of UTF-8). Messages themselves never contain control characters.
    throw Error(e.status(), printable_text(e.what()));
  }
}

}  // namespace peft
}  // namespace mlora
