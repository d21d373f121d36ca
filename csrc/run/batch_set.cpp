#include "run/batch_set.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "model/tensor.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

std::shared_ptr<void> zeroed_buffer(size_t bytes) {
  const size_t rounded = ((bytes + 63) / 64) * 64 + 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace

std::shared_ptr<const BatchSet> BatchSet::build(std::shared_ptr<const Model> model,
                                                std::vector<std::shared_ptr<const ActiveSet>> row_sets) {
  if (!model->batching()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "model '" + model->path() + "' is not prepared for per-row adapters (it needs the int64 input '" +
             kLoraSlotInput + "' and stacked LoRA inputs); rewrite it once with `multilora prepare-batching " +
             model->onnx_path() + " OUT.onnx` and load OUT.onnx");
  }
  if (row_sets.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "per-row adapters for a batch of 0 rows");
  auto batch = std::make_shared<BatchSet>();
  const auto& inputs = model->lora_inputs();

  // Distinct sets -> slots 1.., rows -> slot.
  std::vector<const ActiveSet*> slots;  // slot s = slots[s - 1]
  std::map<const ActiveSet*, int64_t> slot_of;
  std::vector<int64_t> row_slot(row_sets.size(), 0);
  std::set<std::string> adapters;
  for (size_t row = 0; row < row_sets.size(); ++row) {
    const ActiveSet* set = row_sets[row].get();
    if (!set) continue;
    if (set->model() != model) fail(MLORA_STATUS_INTERNAL, "a row's active set belongs to another model");
    auto [it, added] = slot_of.emplace(set, static_cast<int64_t>(slots.size()) + 1);
    if (added) {
      slots.push_back(set);
      for (const ActiveEntry& e : set->entries()) adapters.insert(e.name);
    }
    row_slot[row] = it->second;
  }
  const size_t n_slots = slots.size() + 1;

  // Per slot and input, the composed block (nullptr = not touched: zeros).
  std::vector<std::vector<const ActiveBlock*>> block(slots.size(), std::vector<const ActiveBlock*>(inputs.size()));
  std::vector<int64_t> rank(inputs.size(), 0);
  std::vector<int64_t> fixed(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) fixed[i] = inputs[i].fixed_dim();
  for (size_t s = 0; s < slots.size(); ++s) {
    for (const ActiveBlock& b : slots[s]->blocks()) {
      block[s][b.input] = &b;
      rank[b.input] = std::max(rank[b.input], b.rank);
      fixed[b.input] = b.fixed;
    }
  }
  std::map<std::string, int64_t> group_rank;  // inputs sharing a symbolic rank dim are fed at one rank
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].rank_symbol.empty()) continue;
    int64_t& g = group_rank[inputs[i].rank_symbol];
    g = std::max(g, rank[i]);
  }

  for (size_t i = 0; i < inputs.size(); ++i) {
    const LoraInput& in = inputs[i];
    const int64_t R = in.rank_symbol.empty() ? rank[i] : group_rank[in.rank_symbol];
    if (fixed[i] < 0) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "LoRA input '" + in.name + "' of model '" + model->path() +
                                            "' has a symbolic fixed dim and no row's adapters set it");
    }
    const size_t esize = dtype_size(in.dtype);
    const size_t F = static_cast<size_t>(fixed[i]);
    const size_t slot_elems = F * static_cast<size_t>(R);
    const size_t bytes = n_slots * slot_elems * esize;
    std::vector<int64_t> dims = {static_cast<int64_t>(n_slots), 0, 0};
    dims[1 + (1 - in.rank_axis)] = fixed[i];
    dims[1 + in.rank_axis] = R;
    auto buffer = zeroed_buffer(bytes);
    auto* dst = static_cast<uint8_t*>(buffer.get());
    for (size_t s = 0; s < slots.size(); ++s) {
      const ActiveBlock* b = block[s][i];
      if (!b || b->rank == 0) continue;
      uint8_t* slot = dst + (s + 1) * slot_elems * esize;
      const size_t r = static_cast<size_t>(b->rank);
      const auto* src = static_cast<const uint8_t*>(b->data);
      if (in.rank_axis == 0) {
        std::memcpy(slot, src, r * F * esize);  // B [r, out]: the first r rows of [R, out]
      } else {
        for (size_t row = 0; row < F; ++row) {  // A [in, r]: each row's first r columns of [in, R]
          std::memcpy(slot + row * static_cast<size_t>(R) * esize, src + row * r * esize, r * esize);
        }
      }
    }
    batch->owned_values_.push_back(make_ort_tensor(in.dtype, dims, buffer.get(), bytes));
    batch->buffers_.push_back(std::move(buffer));
  }
  auto slot_buffer = zeroed_buffer(row_slot.size() * sizeof(int64_t));
  std::memcpy(slot_buffer.get(), row_slot.data(), row_slot.size() * sizeof(int64_t));
  batch->owned_values_.push_back(make_ort_tensor(MLORA_DTYPE_INT64, {static_cast<int64_t>(row_slot.size())},
                                                 slot_buffer.get(), row_slot.size() * sizeof(int64_t)));
  batch->buffers_.push_back(std::move(slot_buffer));
  for (const LoraInput& in : inputs) batch->feed_names_.push_back(in.name.c_str());  // model-owned strings
  batch->feed_names_.push_back(kLoraSlotInput);
  for (const auto& v : batch->owned_values_) batch->feed_values_.push_back(v.get());
  batch->slot_count_ = n_slots;
  batch->adapter_count_ = adapters.size();
  batch->model_ = std::move(model);
  batch->row_sets_ = std::move(row_sets);
  return batch;
}

}  // namespace mlora
