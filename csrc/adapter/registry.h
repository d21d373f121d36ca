// The adapter registry of one model: name -> immutable adapter, validated against the model's LoRA
// inputs on load. Thread-safe (one mutex). Unload only drops the name: holders (active sets, adapter
// handles) keep the adapter alive through their shared_ptr.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "adapter/adapter.h"
#include "model/model.h"

namespace mlora {

class Registry {
 public:
  explicit Registry(std::shared_ptr<const Model> model);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }

  // Validates `adapter` against the model and files it under `name` (flags: MLORA_LOAD_*). Throws
  // INVALID_ARGUMENT (empty name), ALREADY_EXISTS, NOT_FOUND / TYPE_MISMATCH / SHAPE_MISMATCH / FORMAT
  // (a parameter that does not fit) or VERSION_MISMATCH. On failure nothing changes.
  void add(std::shared_ptr<const Adapter> adapter, const std::string& name, int32_t flags);
  // Throws NOT_FOUND.
  void unload(const std::string& name);
  std::vector<std::string> names() const;  // sorted
  // Throws NOT_FOUND naming the adapter and listing the loaded names.
  std::shared_ptr<const Adapter> get(const std::string& name) const;

  // The adapters loaded now under `names`, in order, read under one lock. Throws NOT_FOUND naming the first
  // missing name and listing the loaded ones, INVALID_ARGUMENT for a name given twice. (Composing them into
  // an active set is the run layer's job: run/adapter_selection.h.)
  std::vector<std::shared_ptr<const Adapter>> lookup(const std::vector<std::string>& names) const;

  // Checks one adapter against the model (used by add; public for tools). `label` names it in messages.
  void validate(const Adapter& adapter, const std::string& label, int32_t flags) const;

 private:
  // found[i] = the model's LoRA input of adapter.params()[i] (null: none), looked up once per load.
  std::vector<const LoraInput*> lookup_inputs(const Adapter& adapter) const;
  void validate(const Adapter& adapter, const std::vector<const LoraInput*>& found, const std::string& label,
                int32_t flags) const;

  std::shared_ptr<const Model> model_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Adapter>> adapters_;
};

}  // namespace mlora
