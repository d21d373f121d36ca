#include "adapter/registry.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <utility>

#include "adapter/dequantize.h"
#include "peft/peft_folder.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/utf8.h"

namespace mlora {

namespace {

// "a, b, c" (at most `limit` items, then "...").
std::string join_names(const std::vector<std::string>& names, size_t limit = 8) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) {
    if (i) out += ", ";
    out += "'" + names[i] + "'";
  }
  if (names.size() > limit) out += ", ... (" + std::to_string(names.size()) + " in all)";
  if (names.empty()) out = "(none)";
  return out;
}

// Where a LoRA parameter's name and its partner's differ (`h`: the name's lora_halves): the letter of the last
// "lora_A" (the partner has lora_B there), else of the last "lora_B"; npos when the name has neither.
size_t partner_letter(const LoraHalves& h) {
  const size_t pos = h.last_a != std::string_view::npos ? h.last_a : h.last_b;
  return pos == std::string_view::npos ? pos : pos + 5;
}

// The partner name of a LoRA parameter: lora_A <-> lora_B at the letter partner_letter finds; empty when the
// name has neither.
std::string partner_name(std::string_view name) {
  const size_t letter = partner_letter(lora_halves(name));
  if (letter == std::string_view::npos) return {};
  std::string out(name);
  out[letter] = name[letter] == 'A' ? 'B' : 'A';
  return out;
}

// Whether `candidate` is the partner of `name` (whose partner_letter is `letter`), without spelling it out.
bool is_partner(std::string_view candidate, std::string_view name, size_t letter) {
  return candidate.size() == name.size() && candidate[letter] == (name[letter] == 'A' ? 'B' : 'A') &&
         candidate.compare(0, letter, name, 0, letter) == 0 &&
         candidate.compare(letter + 1, std::string_view::npos, name, letter + 1, std::string_view::npos) == 0;
}

// A parameter of a quantized LoRA input (MatMulNBits weight, scales, zero points): the node's K and N fix its
// whole shape, so the adapter's rank must be the model's; the node's other inputs and the pair's other half
// must come with it (ONNX Runtime would multiply an adapter's weight by the model's empty default scales).
void validate_quantized(const Adapter& adapter, const Param& p, const LoraInput& in, const std::string& who,
                        const Model& model) {
  const QuantInfo& q = in.quant;
  const std::string pname(p.name);
  if (p.dims != q.shape) {
    std::string rank;
    if (q.role == QuantRole::kWeight && p.dims.size() == 3 && in.rank_axis == 1) {
      rank = " (the adapter's rank is " + std::to_string(p.dims[0]) + ")";
    }
    fail(MLORA_STATUS_SHAPE_MISMATCH,
         who + ": parameter '" + pname + "' has shape " + shape_str(p.dims.vec()) + ", the model expects " +
             shape_str(q.shape) + ": its quantized LoRA node '" + q.node + "' (MatMulNBits, " + std::to_string(q.bits) +
             "-bit, K " + std::to_string(q.K) + ", N " + std::to_string(q.N) + ") fixes the rank at " +
             std::to_string(q.rank) + rank +
             "; prepare the model with `multilora prepare-batching` to serve other ranks (dequantized)");
  }
  for (const std::string& name : q.group) {
    if (!adapter.find(name)) {
      fail(MLORA_STATUS_FORMAT, who + ": parameter '" + pname + "' has no '" + name +
                                    "' (the inputs of quantized LoRA node '" + q.node + "' are set together)");
    }
  }
  const std::string other = partner_name(p.name);
  if (!other.empty() && model.find_lora(other) && !adapter.find(other)) {
    fail(MLORA_STATUS_FORMAT, who + ": parameter '" + pname + "' has no partner '" + other + "'");
  }
}

}  // namespace

Registry::Registry(std::shared_ptr<const Model> model) : model_(std::move(model)) {}

std::vector<const LoraInput*> Registry::lookup_inputs(const Adapter& adapter) const {
  const auto& params = adapter.params();
  std::vector<const LoraInput*> found(params.size());
  for (size_t i = 0; i < params.size(); ++i) found[i] = model_->find_lora(params[i].name, adapter.param_hash(i));
  return found;
}

void Registry::validate(const Adapter& adapter, const std::string& label, int32_t flags) const {
  validate(adapter, lookup_inputs(adapter), label, flags);
}

void Registry::validate(const Adapter& adapter, const std::vector<const LoraInput*>& found, const std::string& label,
                        int32_t flags) const {
  const Model& model = *model_;
  const std::string who = "adapter " + label;
  if (adapter.params().empty()) fail(MLORA_STATUS_FORMAT, who + " has no parameters");
  // model_version is checked where it means something: a LoRA signature fingerprint (what multilora records
  // for the model an adapter was made for), or a number the model itself declares (ModelProto.model_version).
  // Other values are their producer's own numbers (ONNX Runtime's format: set_model_version(1)); the
  // structural checks below (names, dtypes, fixed dims, ranks) then decide.
  const int32_t mv = adapter.model_version();
  if (mv != 0 && !(flags & MLORA_LOAD_IGNORE_MODEL_VERSION)) {
    if (is_fingerprint(mv) && mv != model.lora_fingerprint()) {
      fail(MLORA_STATUS_VERSION_MISMATCH, who + " was made for model version " + std::to_string(mv) +
                                              " (a LoRA signature), but model '" + model.path() +
                                              "' has LoRA signature " + std::to_string(model.lora_fingerprint()) +
                                              " (load with the ignore-model-version flag to skip this check)");
    }
    if (!is_fingerprint(mv) && model.declared_version() != 0 && mv != model.declared_version()) {
      fail(MLORA_STATUS_VERSION_MISMATCH, who + " was made for model version " + std::to_string(mv) + ", but model '" +
                                              model.path() + "' declares model_version " +
                                              std::to_string(model.declared_version()) +
                                              " (load with the ignore-model-version flag to skip this check)");
    }
  }
  // Unknown names first: a name that matches nothing is the error to report, not its partner's absence.
  // Each name was looked up once (loading is on the request path).
  const auto& params = adapter.params();
  for (size_t i = 0; i < params.size(); ++i) {
    if (found[i]) continue;
    std::vector<std::string> known;
    for (const auto& l : model.lora_inputs()) known.push_back(l.name);
    fail(MLORA_STATUS_NOT_FOUND, who + ": parameter '" + printable_text(std::string(params[i].name)) +
                                     "' is not a LoRA input of model '" + model.path() + "'; its LoRA inputs are " +
                                     join_names(known));
  }
  // A parameter's partner: usually beside it in the file (writers emit A and B together), else looked up;
  // params.size() when the adapter has none. Compared in place: a name is only spelled out when looked up.
  auto partner_of = [&](size_t i, size_t letter) -> size_t {
    const std::string_view name = params[i].name;
    if (i + 1 < params.size() && is_partner(params[i + 1].name, name, letter)) return i + 1;
    if (i > 0 && is_partner(params[i - 1].name, name, letter)) return i - 1;
    const Param* q = adapter.find(partner_name(name));
    return q ? static_cast<size_t>(q - params.data()) : params.size();
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    const LoraInput* in = found[i];
    if (!model.accepts_lora_dtype(*in, p.dtype)) {
      const std::string expected =
          model.batch_kernel() == BatchKernel::kFused && (dtype_is_float(in->dtype) || !in->scales.empty())
              ? "float32, float16 or bfloat16 (its slots are " + dtype_name(in->dtype) + ")"
              : dtype_name(in->dtype);
      fail(MLORA_STATUS_TYPE_MISMATCH, who + ": parameter '" + std::string(p.name) + "' has dtype " +
                                           dtype_name(p.dtype) + ", the model expects " + expected);
    }
    if (in->quantized()) {
      validate_quantized(adapter, p, *in, who, model);
      continue;
    }
    bool ok = p.dims.size() == 2;
    if (ok) {
      const int fixed_axis = in->rank_axis == 0 ? 1 : 0;
      if (in->fixed_dim() >= 0 && p.dims[fixed_axis] != in->fixed_dim()) ok = false;
    }
    if (!ok) {
      const int64_t shown[2] = {in->dim0, in->dim1};
      std::string shape = "[";
      for (int a = 0; a < 2; ++a) {
        if (a) shape += ", ";
        shape += a == in->rank_axis ? std::string("rank") : std::to_string(shown[a]);
      }
      shape += "]";
      fail(MLORA_STATUS_SHAPE_MISMATCH, who + ": parameter '" + std::string(p.name) + "' has shape " +
                                            shape_str(p.dims.vec()) + ", the model expects " + shape);
    }
    // Rank of A must equal rank of B, and each half needs its partner.
    const size_t letter = partner_letter(adapter.param_halves(i));
    if (letter == std::string_view::npos) continue;
    const size_t j = partner_of(i, letter);
    const LoraInput* qin = j < params.size() ? found[j] : model.find_lora(partner_name(p.name));
    if (qin) {
      if (j == params.size()) {
        fail(MLORA_STATUS_FORMAT,
             who + ": parameter '" + std::string(p.name) + "' has no partner '" + partner_name(p.name) + "'");
      }
      const Param* q = &params[j];
      const int64_t r1 = p.dims[in->rank_axis];
      const int64_t r2 = q->dims.size() == 2 ? q->dims[qin->rank_axis] : -1;
      if (r1 != r2) {
        fail(MLORA_STATUS_SHAPE_MISMATCH, who + ": parameter '" + std::string(p.name) + "' has rank " +
                                              std::to_string(r1) + " but '" + std::string(q->name) + "' has rank " +
                                              std::to_string(r2));
      }
    }
  }
}

void Registry::add(std::shared_ptr<const Adapter> adapter, const std::string& name, int32_t flags) {
  if (name.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "adapter name is empty");
  if (flags & ~(MLORA_LOAD_REPLACE | MLORA_LOAD_IGNORE_MODEL_VERSION | MLORA_LOAD_COPY)) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "unknown load flags " + std::to_string(flags));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!(flags & MLORA_LOAD_REPLACE) && adapters_.count(name)) {
      fail(MLORA_STATUS_ALREADY_EXISTS, "an adapter named '" + name + "' is already loaded (from " +
                                            adapters_.at(name)->source() + "); unload it or ask for replace");
    }
  }
  // Names spelled by other tools (olive convert-adapters, PEFT prefixes) that resolve unambiguously to the
  // model's LoRA inputs are renamed (a view; no copy), as PEFT folders are.
  // A model prepared from a quantized-LoRA model: quantized tensors are dequantized into its float inputs, once.
  if (!model_->dequant_targets().empty()) {  // (a label spelled per load only when it is used)
    const std::string label = "adapter '" + name + "' (" + adapter->source() + ")";
    adapter = dequantize_adapter(std::move(adapter), *model_, label);
  }
  std::vector<const LoraInput*> found = lookup_inputs(*adapter);
  if (std::find(found.begin(), found.end(), nullptr) != found.end()) {
    adapter = peft::resolve_names(std::move(adapter), *model_);
    found = lookup_inputs(*adapter);
  }
  validate(*adapter, found, "'" + name + "' (" + adapter->source() + ")", flags);
  // Declared before the lock, so released after it: the replaced adapter's last reference (munmap of its file)
  // goes without holding up other threads' loads and lookups.
  std::shared_ptr<const Adapter> replaced;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!(flags & MLORA_LOAD_REPLACE) && adapters_.count(name)) {  // lost a race with another load
    fail(MLORA_STATUS_ALREADY_EXISTS, "an adapter named '" + name + "' is already loaded (from " +
                                          adapters_.at(name)->source() + "); unload it or ask for replace");
  }
  std::shared_ptr<const Adapter>& slot = adapters_[name];
  replaced = std::move(slot);
  slot = std::move(adapter);
}

void Registry::unload(const std::string& name) {
  std::shared_ptr<const Adapter> removed;  // released after the lock, as in add()
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = adapters_.find(name);
  if (it == adapters_.end()) {
    std::vector<std::string> loaded;
    for (const auto& kv : adapters_) loaded.push_back(kv.first);
    fail(MLORA_STATUS_NOT_FOUND, "no adapter named '" + name + "' is loaded; loaded: " + join_names(loaded));
  }
  removed = std::move(it->second);
  adapters_.erase(it);
}

std::vector<std::string> Registry::names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const auto& kv : adapters_) out.push_back(kv.first);
  return out;
}

std::shared_ptr<const Adapter> Registry::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = adapters_.find(name);
  if (it == adapters_.end()) {
    std::vector<std::string> loaded;
    for (const auto& kv : adapters_) loaded.push_back(kv.first);
    fail(MLORA_STATUS_NOT_FOUND, "no adapter named '" + name + "' is loaded; loaded: " + join_names(loaded));
  }
  return it->second;
}

std::vector<std::shared_ptr<const Adapter>> Registry::lookup(const std::vector<std::string>& names) const {
  std::set<std::string> seen;
  std::vector<std::shared_ptr<const Adapter>> out;
  out.reserve(names.size());
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& name : names) {
    if (!seen.insert(name).second) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "adapter '" + name + "' is named twice in the active set");
    }
    auto it = adapters_.find(name);
    if (it == adapters_.end()) {
      std::vector<std::string> loaded;
      for (const auto& kv : adapters_) loaded.push_back(kv.first);
      fail(MLORA_STATUS_NOT_FOUND, "no adapter named '" + name + "' is loaded; loaded: " + join_names(loaded));
    }
    out.push_back(it->second);
  }
  return out;
}

}  // namespace mlora
