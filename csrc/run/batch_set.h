// Per-row adapter sets for a batch on a model prepared for adapter-aware batching (docs/design.md §6).
//
// The distinct sets of the rows are resolved once (each an ActiveSet, composed exactly as a single active
// set: rank concatenation, B scaled by the weights). Each run takes a lease from the model's slot table
// (run/slot_table.h), which places those sets in slots 1..S-1 of the stacked LoRA inputs (slot 0 = the base
// model) and feeds `lora_slot [batch]` with each row's slot; the graph applies each row's slot, so row i
// computes exactly what its set alone would.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "run/active_set.h"
#include "run/slot_table.h"

namespace mlora {

class BatchSet {
 public:
  // row_sets[i] is row i's set (nullptr = base model); `slots` is the model's slot table. Throws
  // INVALID_ARGUMENT when the model is not prepared for batching, the batch is empty, or the rows have more
  // distinct sets than the slot table holds.
  static std::shared_ptr<const BatchSet> build(std::shared_ptr<const Model> model, std::shared_ptr<SlotTable> slots,
                                               std::vector<std::shared_ptr<const ActiveSet>> row_sets);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }
  const std::shared_ptr<SlotTable>& slot_table() const noexcept { return slots_; }
  int64_t batch_size() const noexcept { return static_cast<int64_t>(row_set_.size()); }
  // Number of distinct adapters over all rows.
  size_t adapter_count() const noexcept { return adapter_count_; }
  const std::vector<std::shared_ptr<const ActiveSet>>& sets() const noexcept { return sets_; }
  // Every row on the base model (no set at all).
  bool all_base() const noexcept { return sets_.empty(); }
  // Places the sets in the model's slot table for one run (may wait for other runs' slots); the lease's
  // feeds are valid until it is destroyed. Throws as SlotTable::acquire.
  std::unique_ptr<SlotTable::Lease> acquire() const;

  BatchSet() = default;
  BatchSet(const BatchSet&) = delete;
  BatchSet& operator=(const BatchSet&) = delete;

 private:
  std::shared_ptr<const Model> model_;
  std::shared_ptr<SlotTable> slots_;
  std::vector<std::shared_ptr<const ActiveSet>> sets_;  // distinct, first-use order; keep the adapters alive
  std::vector<int32_t> row_set_;                        // index into sets_, -1 = base model
  size_t adapter_count_ = 0;
};

// Rejects a model that is not prepared for batching, naming it and the tool that prepares it.
void require_batching(const Model& model);

}  // namespace mlora
