// An active adapter set resolved against a model: the LoRA feeds for Run, built once.
//
// For every LoRA input touched by the set:
//   - one adapter with weight 1 in the input's dtype: an OrtValue over the adapter's own memory (no copy);
//     in another dtype (a fused-prepared model's 16-bit slots: Model::accepts_lora_dtype), a converted copy;
//   - otherwise a composite: the adapters' tensors concatenated along the rank axis, with the blocks
//     on rank axis 0 (B, [r, out]) scaled by their adapter's weight. Since
//     x·[A1 A2]·[w1·B1; w2·B2] = w1·x·A1·B1 + w2·x·A2·B2, this is exactly the weighted sum of deltas.
// LoRA inputs no adapter touches are not fed, so the model's zero-rank default applies (base model) —
// except when the model declares several LoRA inputs with one symbolic rank dim (builders write
// "lora_r" everywhere): ONNX Runtime then requires one rank for all of them within a Run, so every input
// of such a group is fed at the group's largest rank, zero-padded (untouched ones as zeros). Zero
// padding adds nothing to x·A·B, so results stay exact.
// On a model prepared for adapter-aware batching (LoraInput::stacked) every feed is one slot, [1, fixed, r]
// / [1, r, out] over the same memory; `lora_slot` is not fed, its default [0] selects that slot for every row.
// On a model prepared with the fused kernel the set also feeds `lora_ranks` [P, 1]: each pair's fed rank.
// Quantized LoRA inputs (LoraInput::quantized: MatMulNBits weight/scales/zero points, rank fixed by the
// model) are fed as the one adapter that sets them holds them (a weight scales B's scales); two adapters
// setting one are refused. They have no block.
// int8 slots (a model prepared with --lora-dtype int8): the set is composed in float32 as above and then
// quantized (quantize_int8_blocks); the set also feeds each such input's scales input.
// The composed blocks are also exposed (blocks()) so the slot table (run/slot_table.h) stacks them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapter/adapter.h"
#include "model/model.h"
#include "ort/ort.h"

namespace mlora {

struct ActiveContribution {
  const Param* param;
  float weight;
  const std::string* adapter;  // registry name, for messages
};

struct ActiveEntry {
  std::string name;                        // registry name at resolve time
  std::shared_ptr<const Adapter> adapter;  // keeps the adapter (and its mapping) alive
  float weight = 1.0f;
};

// One composed LoRA input of a set, 2-D as an adapter sees it: [fixed, rank] (A) or [rank, fixed] (B),
// contiguous row-major, held alive by the set. int8 slots (LoraInput::scales): data is int8 and `scales` the
// float32 block scales, [ceil(fixed/32), rank] for A, [ceil(rank/32), fixed] for B (null otherwise).
struct ActiveBlock {
  size_t input;  // index into model->lora_inputs()
  const void* data;
  int64_t fixed;
  int64_t rank;
  const float* scales = nullptr;
};

// int8 slots: quantizes `rows` x `cols` float32 values (row-major; K along the rows: A's input rows, B's rank
// rows) to int8 `q` and float32 `scales` [ceil(rows/32), cols]: per block of 32 rows and column, symmetric
// absmax, scale = absmax / 127 and q = v / scale rounded to nearest (ties to even), 0 where the scale is 0.
// False when a value is not finite.
bool quantize_int8_blocks(const float* v, int64_t rows, int64_t cols, int8_t* q, float* scales);
// The same with given scales [ceil(rows/32), cols]; false when a value is not finite or v / scale rounds
// beyond ±127.
bool quantize_int8_with_scales(const float* v, int64_t rows, int64_t cols, const float* scales, int8_t* q);

class ActiveSet {
 public:
  // Throws INVALID_ARGUMENT when a weight != 1 applies to a non-floating tensor or a value overflows the
  // input's dtype (a weight, or a float32 value beyond a 16-bit slot's range); NOT_FOUND if a parameter is not
  // a LoRA input of `model` (cannot happen for validated adapters).
  static std::shared_ptr<const ActiveSet> build(std::shared_ptr<const Model> model, std::vector<ActiveEntry> entries);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }
  const std::vector<ActiveEntry>& entries() const noexcept { return entries_; }
  const std::vector<const char*>& feed_names() const noexcept { return feed_names_; }
  const std::vector<const OrtValue*>& feed_values() const noexcept { return feed_values_; }
  // Every fed LoRA input's composed tensor (feed order; quantized inputs have none).
  const std::vector<ActiveBlock>& blocks() const noexcept { return blocks_; }

  ActiveSet() = default;
  ActiveSet(const ActiveSet&) = delete;
  ActiveSet& operator=(const ActiveSet&) = delete;

 private:
  static void feed_quantized(ActiveSet& set, const LoraInput& in, const std::vector<ActiveContribution>& parts);
  static void build_int8(ActiveSet& set, size_t index, const LoraInput& in,
                         const std::vector<ActiveContribution>& parts, int64_t target);
  // Feeds `value` (kept alive by the set) as the input `name`.
  void add_feed(const std::string& name, OrtValuePtr value);
  std::shared_ptr<const Model> model_;
  std::vector<ActiveEntry> entries_;
  std::vector<std::string> feed_name_storage_;
  std::vector<const char*> feed_names_;
  std::vector<OrtValuePtr> owned_values_;
  std::vector<const OrtValue*> feed_values_;
  std::vector<std::shared_ptr<void>> buffers_;
  std::vector<ActiveBlock> blocks_;
};

}  // namespace mlora
