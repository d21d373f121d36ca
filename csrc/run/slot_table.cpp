#include "run/slot_table.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>

#include "io/pages.h"
#include "model/tensor.h"
#include "run/active_set.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

struct SlotTable::Storage {
  std::vector<int64_t> rank;   // R per LoRA input
  std::vector<int64_t> fixed;  // fixed dim per LoRA input
  std::vector<std::shared_ptr<void>> buffers;
  std::vector<OrtValuePtr> values;  // per LoRA input, then lora_ranks (fused)
  int64_t* ranks = nullptr;         // fused: [P, S]
  // int8 slots, per LoRA input (null for others): its scales, A [S, ceil(in/32), R], B [S, ceil(R/32), out].
  std::vector<std::shared_ptr<void>> scale_buffers;
  std::vector<OrtValuePtr> scale_values;
};

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kOneMapping = false;  // AddressSanitizer: a heap block per buffer, so an overrun hits a redzone
#else
constexpr bool kOneMapping = true;
#endif

// Carves one zeroed mapping (io/pages.h: huge pages) into 64-byte aligned buffers that share its ownership.
// Under AddressSanitizer each buffer is a zeroed heap block of its own instead (the mapping has no redzones).
class Carver {
 public:
  explicit Carver(const std::vector<size_t>& sizes) {
    size_t total = 0;
    for (size_t b : sizes) total += (b + 63) / 64 * 64;
    if (kOneMapping) arena_ = zeroed_pages(total);
  }
  std::shared_ptr<void> take(size_t bytes) {
    if (!kOneMapping) {
      void* p = std::calloc(bytes ? bytes : 1, 1);
      if (!p) throw std::bad_alloc();
      return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    }
    std::shared_ptr<void> part(arena_, static_cast<uint8_t*>(arena_.get()) + used_);
    used_ += (bytes + 63) / 64 * 64;
    return part;
  }

 private:
  std::shared_ptr<void> arena_;
  size_t used_ = 0;
};

}  // namespace

SlotTable::SlotTable(std::string model_path, std::vector<LoraInput> inputs, BatchKernel kernel, int64_t pairs,
                     size_t slots)
    : model_path_(std::move(model_path)),
      inputs_(std::move(inputs)),
      kernel_(kernel),
      pairs_(pairs),
      slots_(slots),
      table_(slots) {}

SlotTable::~SlotTable() = default;

std::shared_ptr<SlotTable> SlotTable::for_model(const Model& model) {
  if (!model.batching()) return nullptr;
  return std::make_shared<SlotTable>(model.path(), model.lora_inputs(), model.batch_kernel(), model.lora_pair_count(),
                                     model.batch_slots());
}

size_t SlotTable::resident() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(
      std::count_if(table_.begin(), table_.end(), [](const Slot& s) { return s.set != nullptr; }));
}

SlotTable::Stats SlotTable::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void SlotTable::ensure_capacity(const std::vector<std::shared_ptr<const ActiveSet>>& sets) {
  const size_t n = inputs_.size();
  std::vector<int64_t> need(n, 0), fixed(n);
  for (size_t i = 0; i < n; ++i) {
    need[i] = storage_ ? storage_->rank[i] : 0;
    fixed[i] = storage_ ? storage_->fixed[i] : inputs_[i].fixed_dim();
  }
  for (const auto& set : sets) {
    for (const ActiveBlock& b : set->blocks()) {
      need[b.input] = std::max(need[b.input], b.rank);
      if (fixed[b.input] < 0) fixed[b.input] = b.fixed;
    }
  }
  std::map<std::string, int64_t> group;  // inputs sharing a symbolic rank dim are fed at one R
  for (size_t i = 0; i < n; ++i) {
    if (!inputs_[i].rank_symbol.empty())
      group[inputs_[i].rank_symbol] = std::max(group[inputs_[i].rank_symbol], need[i]);
  }
  bool grow = !storage_;
  for (size_t i = 0; i < n; ++i) {
    if (!inputs_[i].rank_symbol.empty()) need[i] = group[inputs_[i].rank_symbol];
    if (fixed[i] < 0) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "LoRA input '" + inputs_[i].name + "' of model '" + model_path_ +
                                            "' has a symbolic fixed dim and no row's adapters set it");
    }
    grow |= storage_ && (need[i] > storage_->rank[i] || fixed[i] != storage_->fixed[i]);
  }
  if (!grow) return;

  auto storage = std::make_shared<Storage>();
  storage->rank = need;
  storage->fixed = fixed;
  const int64_t S = static_cast<int64_t>(slots_);
  // Every buffer of the table in one mapping: the kernel streams each row's slot of every input, so the
  // table is the memory that huge pages speed up (io/pages.h); the sizes first, then the buffers in order.
  std::vector<size_t> bytes(n), scale_bytes(n, 0);
  std::vector<std::vector<int64_t>> scale_dims(n);
  for (size_t i = 0; i < n; ++i) {
    const LoraInput& in = inputs_[i];
    bytes[i] = slots_ * static_cast<size_t>(fixed[i]) * static_cast<size_t>(need[i]) * dtype_size(in.dtype);
    if (!in.scales.empty()) {
      // K along the middle axis: A's input rows (fixed), B's rank rows (R); one scale per block of 32.
      const int64_t k = in.rank_axis == 1 ? fixed[i] : need[i];
      const int64_t cols = in.rank_axis == 1 ? need[i] : fixed[i];
      const int64_t blocks = (k + kInt8SlotBlock - 1) / kInt8SlotBlock;
      scale_dims[i] = {S, blocks, cols};
      scale_bytes[i] = slots_ * static_cast<size_t>(blocks * cols) * sizeof(float);
    }
  }
  const size_t rank_bytes = kernel_ == BatchKernel::kFused ? static_cast<size_t>(pairs_) * slots_ * sizeof(int64_t) : 0;
  std::vector<size_t> sizes = bytes;
  sizes.insert(sizes.end(), scale_bytes.begin(), scale_bytes.end());
  sizes.push_back(rank_bytes);
  Carver carve(sizes);
  for (size_t i = 0; i < n; ++i) {
    const LoraInput& in = inputs_[i];
    std::vector<int64_t> dims = {S, 0, 0};
    dims[1 + (1 - in.rank_axis)] = fixed[i];
    dims[1 + in.rank_axis] = need[i];
    auto buffer = carve.take(bytes[i]);
    storage->values.push_back(make_ort_tensor(in.dtype, dims, buffer.get(), bytes[i]));
    storage->buffers.push_back(std::move(buffer));
  }
  for (size_t i = 0; i < n; ++i) {
    std::shared_ptr<void> scale_buffer;
    OrtValuePtr scale_value;
    if (scale_bytes[i]) {
      scale_buffer = carve.take(scale_bytes[i]);
      scale_value = make_ort_tensor(MLORA_DTYPE_FLOAT32, scale_dims[i], scale_buffer.get(), scale_bytes[i]);
    }
    storage->scale_buffers.push_back(std::move(scale_buffer));
    storage->scale_values.push_back(std::move(scale_value));
  }
  if (kernel_ == BatchKernel::kFused) {
    auto buffer = carve.take(rank_bytes);
    storage->ranks = static_cast<int64_t*>(buffer.get());
    storage->values.push_back(make_ort_tensor(MLORA_DTYPE_INT64, {pairs_, S}, buffer.get(), rank_bytes));
    storage->buffers.push_back(std::move(buffer));
  }
  for (size_t s = 1; s < slots_; ++s) {
    if (table_[s].set) write_slot(*storage, s, table_[s].set.get());
  }
  storage_ = std::move(storage);  // leases keep the old storage alive while their runs read it
}

void SlotTable::write_slot(Storage& storage, size_t slot, const ActiveSet* set) {
  std::vector<const ActiveBlock*> block(inputs_.size(), nullptr);
  for (const ActiveBlock& b : set->blocks()) block[b.input] = &b;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const LoraInput& in = inputs_[i];
    const size_t esize = dtype_size(in.dtype);
    const size_t F = static_cast<size_t>(storage.fixed[i]);
    const size_t R = static_cast<size_t>(storage.rank[i]);
    auto* dst = static_cast<uint8_t*>(storage.buffers[i].get()) + slot * F * R * esize;
    const ActiveBlock* b = block[i];
    const size_t r = b ? static_cast<size_t>(b->rank) : 0;
    if (kernel_ == BatchKernel::kFused) {
      // Packed at the slot's own rank: A [in, r] and B [r, out] are both the block's bytes as they are.
      if (r) std::memcpy(dst, b->data, F * r * esize);
      if (!in.scales.empty() && r) {
        // int8: the scales likewise, A [ceil(in/32), r] packed (stride r) in a slot of [ceil(in/32), R],
        // B [ceil(r/32), out] in a slot of [ceil(R/32), out].
        const size_t blk = static_cast<size_t>(kInt8SlotBlock);
        const size_t slot_count = in.rank_axis == 1 ? (F + blk - 1) / blk * R : (R + blk - 1) / blk * F;
        const size_t count = in.rank_axis == 1 ? (F + blk - 1) / blk * r : (r + blk - 1) / blk * F;
        std::memcpy(static_cast<float*>(storage.scale_buffers[i].get()) + slot * slot_count, b->scales,
                    count * sizeof(float));
      }
      if (in.pair >= 0) storage.ranks[static_cast<size_t>(in.pair) * slots_ + slot] = static_cast<int64_t>(r);
      continue;
    }
    std::memset(dst, 0, F * R * esize);  // zero padding (and whatever the evicted set left)
    if (!r) continue;
    const auto* src = static_cast<const uint8_t*>(b->data);
    if (in.rank_axis == 0) {
      std::memcpy(dst, src, r * F * esize);  // B [r, out]: the first r rows of [R, out]
    } else {
      for (size_t row = 0; row < F; ++row) {  // A [in, r]: each row's first r columns of [in, R]
        std::memcpy(dst + row * R * esize, src + row * r * esize, r * esize);
      }
    }
  }
}

std::unique_ptr<SlotTable::Lease> SlotTable::acquire(const std::vector<std::shared_ptr<const ActiveSet>>& sets,
                                                     const std::vector<int32_t>& row_set) {
  if (sets.size() > slots_ - 1) {  // BatchSet::build reports this to users, naming both counts
    fail(MLORA_STATUS_INTERNAL,
         std::to_string(sets.size()) + " adapter sets for a slot table of " + std::to_string(slots_) + " slots");
  }
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<size_t> slot_of(sets.size(), 0);
  for (;;) {
    std::fill(slot_of.begin(), slot_of.end(), size_t{0});
    std::vector<bool> taken(slots_, false);
    std::vector<size_t> misses;
    for (size_t k = 0; k < sets.size(); ++k) {
      for (size_t s = 1; s < slots_; ++s) {
        if (table_[s].set == sets[k]) {
          slot_of[k] = s;
          taken[s] = true;
          break;
        }
      }
      if (!slot_of[k]) misses.push_back(k);
    }
    // Resident sets fit the storage already (it only grows): only a batch with new sets can need more.
    if (!storage_ || !misses.empty()) {
      std::vector<std::shared_ptr<const ActiveSet>> missing;
      for (size_t k : misses) missing.push_back(sets[k]);
      ensure_capacity(missing);
    }
    // Free slots first, then unpinned ones, least recently used first.
    std::vector<size_t> candidates;
    for (size_t s = 1; s < slots_; ++s) {
      if (!taken[s] && table_[s].pins == 0) candidates.push_back(s);
    }
    std::stable_sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
      const bool fa = !table_[a].set, fb = !table_[b].set;
      if (fa != fb) return fa;
      return table_[a].last_use < table_[b].last_use;
    });
    if (candidates.size() < misses.size()) {
      ++stats_.waits;
      freed_.wait(lock);  // other runs pin the slots this batch needs; one ends soon
      continue;
    }
    stats_.hits += sets.size() - misses.size();
    stats_.misses += misses.size();
    for (size_t m = 0; m < misses.size(); ++m) {
      const size_t s = candidates[m];
      if (table_[s].set) ++stats_.evictions;
      table_[s].set = sets[misses[m]];
      write_slot(*storage_, s, sets[misses[m]].get());
      slot_of[misses[m]] = s;
    }
    break;
  }
  std::unique_ptr<Lease> lease(new Lease());
  lease->table_ = this;
  lease->pinned_.reserve(sets.size());  // may throw: before any pin, so nothing is left pinned
  for (size_t k = 0; k < sets.size(); ++k) {
    Slot& slot = table_[slot_of[k]];
    lease->pinned_.push_back(slot_of[k]);
    ++slot.pins;
    slot.last_use = ++clock_;
  }
  lease->storage_ = storage_;
  lock.unlock();

  lease->row_slots_.resize(row_set.size());
  for (size_t b = 0; b < row_set.size(); ++b) {
    lease->row_slots_[b] = row_set[b] < 0 ? 0 : static_cast<int64_t>(slot_of[static_cast<size_t>(row_set[b])]);
  }
  lease->slot_value_ = make_ort_tensor(MLORA_DTYPE_INT64, {static_cast<int64_t>(row_set.size())},
                                       lease->row_slots_.data(), row_set.size() * sizeof(int64_t));
  const Storage& st = *static_cast<const Storage*>(lease->storage_.get());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    lease->names_.push_back(inputs_[i].name.c_str());
    lease->values_.push_back(st.values[i].get());
    if (st.scale_values[i]) {
      lease->names_.push_back(inputs_[i].scales.c_str());
      lease->values_.push_back(st.scale_values[i].get());
    }
  }
  lease->names_.push_back(kLoraSlotInput);
  lease->values_.push_back(lease->slot_value_.get());
  if (kernel_ == BatchKernel::kFused) {
    lease->names_.push_back(kLoraRanksInput);
    lease->values_.push_back(st.values.back().get());
  }
  return lease;
}

void SlotTable::release(const std::vector<size_t>& pinned) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t s : pinned) --table_[s].pins;
  }
  freed_.notify_all();
}

SlotTable::Lease::~Lease() {
  if (table_) table_->release(pinned_);
}

}  // namespace mlora
