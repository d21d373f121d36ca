#include "run/batch_set.h"

#include <map>
#include <set>

#include "util/error.h"

namespace mlora {

void require_batching(const Model& model) {
  if (model.batching()) return;
  fail(MLORA_STATUS_INVALID_ARGUMENT,
       "model '" + model.path() + "' is not prepared for per-row adapters (it needs the int64 input '" +
           kLoraSlotInput + "' and stacked LoRA inputs); rewrite it once with `multilora prepare-batching " +
           model.onnx_path() + " OUT.onnx` and load OUT.onnx");
}

std::shared_ptr<const BatchSet> BatchSet::build(std::shared_ptr<const Model> model, std::shared_ptr<SlotTable> slots,
                                                std::vector<std::shared_ptr<const ActiveSet>> row_sets) {
  require_batching(*model);
  if (!slots) fail(MLORA_STATUS_INTERNAL, "model '" + model->path() + "' has no slot table");
  if (row_sets.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "per-row adapters for a batch of 0 rows");
  auto batch = std::make_shared<BatchSet>();
  std::map<const ActiveSet*, int32_t> index_of;
  std::set<std::string> adapters;
  batch->row_set_.assign(row_sets.size(), -1);
  for (size_t row = 0; row < row_sets.size(); ++row) {
    const auto& set = row_sets[row];
    if (!set) continue;
    if (set->model() != model) fail(MLORA_STATUS_INTERNAL, "a row's active set belongs to another model");
    auto [it, added] = index_of.emplace(set.get(), static_cast<int32_t>(batch->sets_.size()));
    if (added) {
      batch->sets_.push_back(set);
      for (const ActiveEntry& e : set->entries()) adapters.insert(e.name);
    }
    batch->row_set_[row] = it->second;
  }
  const size_t capacity = slots->slots() - 1;
  if (batch->sets_.size() > capacity) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "the rows use " + std::to_string(batch->sets_.size()) +
                                            " distinct adapter sets but the slot table of model '" + model->path() +
                                            "' holds " + std::to_string(capacity) +
                                            " (batch_slots = " + std::to_string(slots->slots()) +
                                            ", slot 0 is the base model); load the model with a larger "
                                            "batch_slots or split the batch");
  }
  batch->adapter_count_ = adapters.size();
  batch->model_ = std::move(model);
  batch->slots_ = std::move(slots);
  return batch;
}

std::unique_ptr<SlotTable::Lease> BatchSet::acquire() const { return slots_->acquire(sets_, row_set_); }

}  // namespace mlora
