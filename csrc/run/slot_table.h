// The slot table of a model prepared for adapter-aware batching (docs/design.md §6): S slots, slot 0 = the base
// model, slots 1..S-1 each holding one composed adapter set (an ActiveSet), least recently used out — the
// CPU counterpart of vLLM's max_loras. Per LoRA input it owns one stacked tensor [S, fixed, R] / [S, R, fixed]
// that every run feeds; R is the largest rank any resident set gave the input's rank group.
//
// Layout of a slot, by the model's kernel (model/model.h BatchKernel):
//   gather  A [in, R], B [R, out]: each set zero-padded to R (exact: zero columns/rows add nothing);
//   fused   A [in, r] packed (stride r), B [r, out]: only the set's own rank r is written and read; the
//           pair's r per slot is in the table's `lora_ranks` [P, S] tensor.
//
// Runs take a Lease: acquire() places each distinct set of the batch in a slot (a resident set is reused,
// a missing one is written into a free slot or the least recently used slot no run pins), pins those
// slots until the lease ends, and gives the feeds plus a per-lease `lora_slot` [batch]. When every slot it
// could use is pinned by other runs, acquire() waits for them. When a set needs a larger R than the table
// has, the table moves to new, larger storage (resident sets rewritten); leases keep the storage they
// started with alive, so writes never touch memory a running Run reads.
// Thread-safe: one mutex guards the slots; writes happen under it, into slots no lease pins.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/model.h"
#include "ort/ort.h"

namespace mlora {

class ActiveSet;

class SlotTable {
 public:
  // The slot table of a model prepared for adapter-aware batching (S = model.batch_slots()); null for a model
  // that is not prepared. Whoever serves the model owns it (the ABI's model handle) and hands it to the
  // per-row sets resolved for that model.
  static std::shared_ptr<SlotTable> for_model(const Model& model);
  // `slots` is S (2..4097, checked by Model::open). `inputs` are the model's LoRA inputs (all stacked).
  SlotTable(std::string model_path, std::vector<LoraInput> inputs, BatchKernel kernel, int64_t pairs, size_t slots);
  ~SlotTable();

  size_t slots() const noexcept { return slots_; }
  size_t resident() const;

  // Counts since the table was created. Per distinct set of each acquire(): a hit when it was resident, a
  // miss when it had to be written into a slot, an eviction when that slot held another set. `waits`
  // counts the times an acquire() found every usable slot pinned and waited for a lease to end.
  struct Stats {
    uint64_t hits = 0, misses = 0, evictions = 0, waits = 0;
  };
  Stats stats() const;

  class Lease {
   public:
    ~Lease();
    const std::vector<const char*>& feed_names() const noexcept { return names_; }
    const std::vector<const OrtValue*>& feed_values() const noexcept { return values_; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

   private:
    friend class SlotTable;
    Lease() = default;
    SlotTable* table_ = nullptr;
    std::shared_ptr<const void> storage_;  // keeps the stacked buffers alive
    std::vector<size_t> pinned_;
    std::vector<int64_t> row_slots_;
    OrtValuePtr slot_value_;
    std::vector<const char*> names_;
    std::vector<const OrtValue*> values_;
  };

  // sets: the batch's distinct sets (non-null, of this model; at most S-1). row_set[b]: index into sets,
  // or -1 for a base-model row. Throws INVALID_ARGUMENT (too many sets, naming both counts),
  // SHAPE_MISMATCH (a LoRA input's fixed dim unknown), OUT_OF_MEMORY.
  std::unique_ptr<Lease> acquire(const std::vector<std::shared_ptr<const ActiveSet>>& sets,
                                 const std::vector<int32_t>& row_set);

  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

 private:
  struct Storage;
  struct Slot {
    std::shared_ptr<const ActiveSet> set;  // null = free
    uint64_t last_use = 0;
    size_t pins = 0;
  };
  void release(const std::vector<size_t>& pinned) noexcept;
  // Needed R per input for `sets` and what is resident; storage_ is replaced when it is too small.
  void ensure_capacity(const std::vector<std::shared_ptr<const ActiveSet>>& sets);
  void write_slot(Storage& storage, size_t slot, const ActiveSet* set);

  const std::string model_path_;
  const std::vector<LoraInput> inputs_;
  const BatchKernel kernel_;
  const int64_t pairs_;
  const size_t slots_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<Slot> table_;  // [S]; table_[0] stays free (the base model)
  std::shared_ptr<Storage> storage_;
  uint64_t clock_ = 0;
  Stats stats_;
};

}  // namespace mlora
