#include "run/active_set.h"

#include <cstdlib>
#include <cstring>
#include <map>

#include "model/tensor.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

struct Contribution {
  const Param* param;
  float weight;
};

std::shared_ptr<void> aligned_buffer(size_t bytes) {
  void* p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace

std::shared_ptr<const ActiveSet> ActiveSet::build(std::shared_ptr<const Model> model, std::vector<ActiveEntry> entries) {
  auto set = std::make_shared<ActiveSet>();
  // LoRA input name -> contributions, in entry order (A and B blocks must line up).
  std::map<std::string, std::vector<Contribution>> by_input;
  for (const ActiveEntry& e : entries) {
    for (const Param& p : e.adapter->params()) by_input[p.name].push_back({&p, e.weight});
  }
  for (const LoraInput& in : model->lora_inputs()) {
    auto it = by_input.find(in.name);
    if (it == by_input.end()) continue;
    const auto& parts = it->second;
    const bool scaled_side = in.rank_axis == 0;  // B [r, out] carries the weight
    OrtValuePtr value;
    if (parts.size() == 1 && (!scaled_side || parts[0].weight == 1.0f)) {
      const Param& p = *parts[0].param;
      value = make_ort_tensor(p.dtype, p.dims, p.data, p.nbytes);
    } else {
      const size_t esize = dtype_size(in.dtype);
      const int fixed_axis = 1 - in.rank_axis;
      const int64_t fixed = parts[0].param->dims[fixed_axis];
      int64_t total_rank = 0;
      for (const auto& c : parts) total_rank += c.param->dims[in.rank_axis];
      std::vector<int64_t> dims(2);
      dims[fixed_axis] = fixed;
      dims[in.rank_axis] = total_rank;
      const size_t bytes = static_cast<size_t>(fixed) * static_cast<size_t>(total_rank) * esize;
      auto buffer = aligned_buffer(bytes);
      auto* dst = static_cast<uint8_t*>(buffer.get());
      if (scaled_side) {
        if (!dtype_is_float(in.dtype)) {
          bool any_weight = false;
          for (const auto& c : parts) any_weight |= c.weight != 1.0f;
          if (any_weight) {
            fail(MLORA_STATUS_INVALID_ARGUMENT, "cannot apply a weight to LoRA input '" + in.name + "' of dtype " +
                                                    dtype_name(in.dtype));
          }
        }
        // Rank axis 0: blocks stacked row-wise, each block contiguous.
        size_t offset = 0;
        for (const auto& c : parts) {
          const size_t n = c.param->nbytes;
          if (n) {
            if (c.weight == 1.0f) {
              std::memcpy(dst + offset, c.param->data, n);
            } else {
              scale_copy(in.dtype, c.param->data, dst + offset, n / esize, c.weight);
            }
          }
          offset += n;
        }
      } else {
        // Rank axis 1: every row is the concatenation of the adapters' rows.
        size_t col = 0;
        const size_t row_bytes = static_cast<size_t>(total_rank) * esize;
        for (const auto& c : parts) {
          const size_t r = static_cast<size_t>(c.param->dims[1]);
          const auto* src = static_cast<const uint8_t*>(c.param->data);
          for (int64_t row = 0; row < fixed && r; ++row) {
            std::memcpy(dst + row * row_bytes + col * esize, src + row * r * esize, r * esize);
          }
          col += r;
        }
      }
      value = make_ort_tensor(in.dtype, dims, buffer.get(), bytes);
      set->buffers_.push_back(std::move(buffer));
      set->composite_bytes_ += bytes;
    }
    set->feed_name_storage_.push_back(in.name);
    set->feed_values_.push_back(value.get());
    set->owned_values_.push_back(std::move(value));
  }
  for (const auto& n : set->feed_name_storage_) set->feed_names_.push_back(n.c_str());
  set->model_ = std::move(model);
  set->entries_ = std::move(entries);
  return set;
}

}  // namespace mlora
