// Per-row adapter sets for one Run on a model prepared for adapter-aware batching (DESIGN.md §6).
//
// The distinct sets of the rows are resolved once (each an ActiveSet, composed exactly as a single active
// set: rank concatenation, B scaled by the weights). They become slots 1..S-1 of stacked feeds
//   A [S, in, R], B [S, R, out]   (slot 0 = zeros = the base model; every set zero-padded to R: exact)
// one per LoRA input of the model (R is the largest rank any set gives that input, raised to the largest
// of its symbolic rank group), plus the int64 input `lora_slot [batch]` giving each row its slot. The graph
// gathers each row's slot and runs batched MatMuls, so row i computes exactly what its set alone would.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "ort/ort.h"
#include "run/active_set.h"

namespace mlora {

class BatchSet {
 public:
  // row_sets[i] is row i's set (nullptr = base model). Throws INVALID_ARGUMENT when the model is not prepared
  // for batching or the batch is empty, SHAPE_MISMATCH when a LoRA input's fixed dim is unknown.
  static std::shared_ptr<const BatchSet> build(std::shared_ptr<const Model> model,
                                               std::vector<std::shared_ptr<const ActiveSet>> row_sets);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }
  int64_t batch_size() const noexcept { return static_cast<int64_t>(row_sets_.size()); }
  size_t slot_count() const noexcept { return slot_count_; }
  // Number of distinct adapters over all rows.
  size_t adapter_count() const noexcept { return adapter_count_; }
  const std::vector<const char*>& feed_names() const noexcept { return feed_names_; }
  const std::vector<const OrtValue*>& feed_values() const noexcept { return feed_values_; }

  BatchSet() = default;
  BatchSet(const BatchSet&) = delete;
  BatchSet& operator=(const BatchSet&) = delete;

 private:
  std::shared_ptr<const Model> model_;
  std::vector<std::shared_ptr<const ActiveSet>> row_sets_;  // keep the adapters alive
  size_t slot_count_ = 1;
  size_t adapter_count_ = 0;
  std::vector<const char*> feed_names_;
  std::vector<OrtValuePtr> owned_values_;
  std::vector<const OrtValue*> feed_values_;
  std::vector<std::shared_ptr<void>> buffers_;
};

}  // namespace mlora
