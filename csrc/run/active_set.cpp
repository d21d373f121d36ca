#include "run/active_set.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "model/tensor.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/utf8.h"

namespace mlora {

namespace {

using Contribution = ActiveContribution;

// Whether `count` elements of a float dtype are all finite (a weight times a large value can overflow).
bool all_finite(int32_t dtype, const void* data, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    double v;
    switch (dtype) {
      case MLORA_DTYPE_FLOAT32:
        v = static_cast<const float*>(data)[i];
        break;
      case MLORA_DTYPE_FLOAT64:
        v = static_cast<const double*>(data)[i];
        break;
      case MLORA_DTYPE_FLOAT16:
        v = half_to_float(static_cast<const uint16_t*>(data)[i]);
        break;
      case MLORA_DTYPE_BFLOAT16:
        v = bfloat16_to_float(static_cast<const uint16_t*>(data)[i]);
        break;
      default:
        return true;
    }
    if (!std::isfinite(v)) return false;
  }
  return true;
}

std::shared_ptr<void> aligned_buffer(size_t bytes) {
  void* p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

// dst[i] = src[i] * scale for `count` elements, read as `from` and written as `to` (float types; computed in
// float32, rounded once to `to`). False when a finite source value became non-finite (beyond `to`'s range).
bool convert_scaled(int32_t from, const void* src, int32_t to, void* dst, size_t count, float scale) {
  bool ok = true;
  for (size_t i = 0; i < count; ++i) {
    const float v = element_to_float(from, src, i) * scale;
    float back = v;
    switch (to) {
      case MLORA_DTYPE_FLOAT16: {
        const uint16_t h = float_to_half(v);
        static_cast<uint16_t*>(dst)[i] = h;
        back = half_to_float(h);
        break;
      }
      case MLORA_DTYPE_BFLOAT16: {
        const uint16_t b = float_to_bfloat16(v);
        static_cast<uint16_t*>(dst)[i] = b;
        back = bfloat16_to_float(b);
        break;
      }
      default:  // float32 (Model::accepts_lora_dtype admits no other conversion)
        static_cast<float*>(dst)[i] = v;
        break;
    }
    if (std::isfinite(v) != std::isfinite(back)) ok = false;
  }
  return ok;
}

// Writes the composite of `parts` for LoRA input `in` ([fixed, target] or [target, fixed]) into dst (`bytes`
// long): the blocks concatenated along the rank axis, B blocks (rank axis 0) scaled by their weight, the rest
// of the rank zero-padded. A block of another dtype than the input's (a fused-prepared model's slots: see
// Model::accepts_lora_dtype) is converted on the way.
void compose(const LoraInput& in, const std::vector<Contribution>& parts, int64_t fixed, int64_t target, uint8_t* dst,
             size_t bytes) {
  const size_t esize = dtype_size(in.dtype);
  const bool scaled_side = in.rank_axis == 0;
  if (bytes) std::memset(dst, 0, bytes);  // rank padding stays zero: exact
  auto refuse_range = [&](const Contribution& c) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "parameter '" + printable_text(std::string(c.param->name)) + "' of adapter '" + printable_text(*c.adapter) +
             "' (" + dtype_name(c.param->dtype) + ") has values beyond the range of " + dtype_name(in.dtype) +
             ", the slot dtype of LoRA input '" + in.name + "'; prepare the model with another --lora-dtype");
  };
  // A weight that overflows the dtype would make every output NaN without a word: refuse it.
  auto refuse_weight = [&](const Contribution& c) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "weight " + std::to_string(c.weight) + " of adapter '" +
                                            printable_text(*c.adapter) + "' times parameter '" +
                                            printable_text(std::string(c.param->name)) + "' overflows " +
                                            dtype_name(in.dtype) + " (non-finite values); use a smaller weight");
  };
  if (scaled_side) {
    // Rank axis 0: blocks stacked row-wise, each block contiguous.
    size_t offset = 0;
    for (const auto& c : parts) {
      const size_t count = c.param->nbytes / dtype_size(c.param->dtype);
      const size_t n = count * esize;
      if (n && c.param->dtype != in.dtype) {
        if (!convert_scaled(c.param->dtype, c.param->data, in.dtype, dst + offset, count, c.weight)) {
          if (c.weight == 1.0f) refuse_range(c);
          refuse_weight(c);
        }
      } else if (n) {
        if (c.weight == 1.0f) {
          std::memcpy(dst + offset, c.param->data, n);
        } else {
          scale_copy(in.dtype, c.param->data, dst + offset, n / esize, c.weight);
          if (all_finite(c.param->dtype, c.param->data, n / esize) && !all_finite(in.dtype, dst + offset, n / esize)) {
            refuse_weight(c);
          }
        }
      }
      offset += n;
    }
  } else {
    // Rank axis 1: every row is the concatenation of the adapters' rows (then zero padding).
    size_t col = 0;
    const size_t row_bytes = static_cast<size_t>(target) * esize;
    for (const auto& c : parts) {
      const size_t r = static_cast<size_t>(c.param->dims[1]);
      const auto* src = static_cast<const uint8_t*>(c.param->data);
      const size_t src_esize = dtype_size(c.param->dtype);
      for (int64_t row = 0; row < fixed && r; ++row) {
        uint8_t* out = dst + row * row_bytes + col * esize;
        const uint8_t* from = src + row * r * src_esize;
        if (c.param->dtype == in.dtype) {
          std::memcpy(out, from, r * esize);
        } else if (!convert_scaled(c.param->dtype, from, in.dtype, out, r, 1.0f)) {
          refuse_range(c);
        }
      }
      col += r;
    }
  }
}

}  // namespace

bool quantize_int8_blocks(const float* v, int64_t rows, int64_t cols, int8_t* q, float* scales) {
  const int64_t blocks = (rows + kInt8SlotBlock - 1) / kInt8SlotBlock;
  std::vector<float> amax(static_cast<size_t>(cols));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * kInt8SlotBlock, r1 = std::min(rows, r0 + kInt8SlotBlock);
    std::fill(amax.begin(), amax.end(), 0.0f);
    for (int64_t i = r0; i < r1; ++i) {
      const float* row = v + i * cols;
      for (int64_t c = 0; c < cols; ++c) {
        if (!std::isfinite(row[c])) return false;
        amax[c] = std::max(amax[c], std::fabs(row[c]));
      }
    }
    float* s = scales + b * cols;
    for (int64_t c = 0; c < cols; ++c) s[c] = amax[c] / 127.0f;
  }
  return quantize_int8_with_scales(v, rows, cols, scales, q);
}

bool quantize_int8_with_scales(const float* v, int64_t rows, int64_t cols, const float* scales, int8_t* q) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = v + i * cols;
    const float* s = scales + (i / kInt8SlotBlock) * cols;
    int8_t* out = q + i * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float x = s[c] == 0.0f ? 0.0f : std::nearbyint(row[c] / s[c]);
      if (!(x >= -127.0f && x <= 127.0f)) return false;  // also NaN
      out[c] = static_cast<int8_t>(x);
    }
  }
  return true;
}

void ActiveSet::add_feed(const std::string& name, OrtValuePtr value) {
  feed_name_storage_.push_back(name);
  feed_values_.push_back(value.get());
  owned_values_.push_back(std::move(value));
}

// A quantized LoRA input (MatMulNBits weight, scales, zero points; the model fixes its rank): one adapter
// feeds it, as it is. A weight scales B's scales (Y = X·A·(w·B) = X·A·B' with B's blocks scaled by w).
void ActiveSet::feed_quantized(ActiveSet& set, const LoraInput& in, const std::vector<ActiveContribution>& parts) {
  if (parts.size() > 1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "adapters '" + printable_text(*parts[0].adapter) + "' and '" + printable_text(*parts[1].adapter) +
             "' both set the quantized LoRA input '" + in.name + "' (MatMulNBits node '" + in.quant.node +
             "', rank fixed at " + std::to_string(in.quant.rank) +
             "): one adapter at a time can feed a quantized pair; prepare the model with `multilora "
             "prepare-batching` to combine adapters (dequantized) or give each its own run");
  }
  const Param& p = *parts[0].param;
  const float w = parts[0].weight;
  OrtValuePtr value;
  if (w != 1.0f && in.quant.role == QuantRole::kScales && in.rank_axis == 0) {
    auto buffer = aligned_buffer(p.nbytes);
    const size_t count = p.nbytes / dtype_size(p.dtype);
    scale_copy(p.dtype, p.data, buffer.get(), count, w);
    if (all_finite(p.dtype, p.data, count) && !all_finite(p.dtype, buffer.get(), count)) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "weight " + std::to_string(w) + " of adapter '" +
                                              printable_text(*parts[0].adapter) + "' times the scales '" +
                                              std::string(p.name) + "' overflows " + dtype_name(p.dtype) +
                                              "; use a smaller weight");
    }
    value = make_ort_tensor(p.dtype, p.dims.vec(), buffer.get(), p.nbytes);
    set.buffers_.push_back(std::move(buffer));
  } else {
    value = make_ort_tensor(p.dtype, p.dims.vec(), p.data, p.nbytes);  // zero-copy over the adapter's memory
  }
  set.add_feed(in.name, std::move(value));
}

// An int8 slot input: the composite in float32 (compose() with a float32 target: weights and 16-bit files
// handled as for float32 slots), then quantized; feeds the int8 tensor and its scales.
void ActiveSet::build_int8(ActiveSet& set, size_t index, const LoraInput& in,
                           const std::vector<ActiveContribution>& parts, int64_t target) {
  const int fixed_axis = 1 - in.rank_axis;
  const int64_t fixed = parts.empty() ? in.fixed_dim() : parts[0].param->dims[fixed_axis];
  if (fixed < 0) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "LoRA input '" + in.name + "' shares the rank dim '" + in.rank_symbol +
                                          "' with inputs the active set feeds, but its fixed dim is unknown");
  }
  LoraInput as_float = in;
  as_float.dtype = MLORA_DTYPE_FLOAT32;
  const size_t count = static_cast<size_t>(fixed) * static_cast<size_t>(target);
  auto composed = aligned_buffer(count * sizeof(float));
  compose(as_float, parts, fixed, target, static_cast<uint8_t*>(composed.get()), count * sizeof(float));
  // K along the rows: A [in, r] (rows = in), B [r, out] (rows = r).
  const int64_t rows = in.rank_axis == 1 ? fixed : target;
  const int64_t cols = in.rank_axis == 1 ? target : fixed;
  const int64_t blocks = (rows + kInt8SlotBlock - 1) / kInt8SlotBlock;
  const size_t scale_count = static_cast<size_t>(blocks * cols);
  auto q = aligned_buffer(count);
  auto scales = aligned_buffer(scale_count * sizeof(float));
  const float* v = static_cast<const float*>(composed.get());
  auto* qd = static_cast<int8_t*>(q.get());
  auto* sd = static_cast<float*>(scales.get());
  // An int4 adapter's dequantized blocks (Param::block_scales: MatMulNBits, block a multiple of 32), alone at its
  // own rank and unweighted (a weight scales B only): held exactly, int8 = q - zero point with the file's scales.
  // v / scale recovers q - zero point exactly (v = fl((q - zp) · scale): off by at most 2^-24 relative).
  const Param* src = parts.size() == 1 ? parts[0].param : nullptr;
  bool exact = src && src->block_scales && src->scale_block > 0 && src->scale_block % kInt8SlotBlock == 0 &&
               src->dims.size() == 2 && src->dims[in.rank_axis] == target &&
               (in.rank_axis == 1 || parts[0].weight == 1.0f);
  if (exact) {
    const int64_t per = src->scale_block / kInt8SlotBlock;  // our blocks per file block
    for (int64_t b = 0; b < blocks; ++b) {
      std::memcpy(sd + b * cols, src->block_scales + (b / per) * cols, static_cast<size_t>(cols) * sizeof(float));
    }
    exact = quantize_int8_with_scales(v, rows, cols, sd, qd);
  }
  if (!exact && !quantize_int8_blocks(v, rows, cols, qd, sd)) {
    std::string names;
    for (const auto& c : parts) names += (names.empty() ? "'" : ", '") + printable_text(*c.adapter) + "'";
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "adapter " + names + " gives LoRA input '" + in.name + "' non-finite values, which int8 slots cannot hold");
  }
  auto value = make_ort_tensor(MLORA_DTYPE_INT8, {1, rows, cols}, q.get(), count);
  auto scale_value = make_ort_tensor(MLORA_DTYPE_FLOAT32, {1, blocks, cols}, scales.get(), scale_count * sizeof(float));
  set.blocks_.push_back({index, q.get(), fixed, target, static_cast<const float*>(scales.get())});
  set.add_feed(in.name, std::move(value));
  set.add_feed(in.scales, std::move(scale_value));
  set.buffers_.push_back(std::move(q));
  set.buffers_.push_back(std::move(scales));
}

std::shared_ptr<const ActiveSet> ActiveSet::build(std::shared_ptr<const Model> model,
                                                  std::vector<ActiveEntry> entries) {
  auto set = std::make_shared<ActiveSet>();
  // LoRA input name -> contributions, in entry order (A and B blocks must line up).
  std::map<std::string, std::vector<Contribution>> by_input;
  for (const ActiveEntry& e : entries) {
    for (const Param& p : e.adapter->params()) by_input[std::string(p.name)].push_back({&p, e.weight, &e.name});
  }
  // Rank each input gets: the sum of its contributions' ranks, raised to the largest rank in its symbolic
  // rank group (inputs declared with the same dim_param, e.g. "lora_r", must agree within one Run).
  static const std::vector<Contribution> kNone;
  const auto& inputs = model->lora_inputs();
  std::vector<int64_t> ranks(inputs.size(), 0);
  std::map<std::string, int64_t> group_rank;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto it = by_input.find(inputs[i].name);
    if (it == by_input.end() || inputs[i].quantized()) continue;
    for (const auto& c : it->second) ranks[i] += c.param->dims[inputs[i].rank_axis];
    if (!inputs[i].rank_symbol.empty()) {
      int64_t& g = group_rank[inputs[i].rank_symbol];
      g = std::max(g, ranks[i]);
    }
  }
  std::shared_ptr<void> zeros;  // one zeroed buffer shared by every untouched input that must be fed
  size_t zeros_bytes = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const LoraInput& in = inputs[i];
    auto found = by_input.find(in.name);
    const auto& parts = found == by_input.end() ? kNone : found->second;
    if (in.quantized()) {
      if (parts.empty()) continue;  // the model's default applies
      feed_quantized(*set, in, parts);
      continue;
    }
    int64_t target = ranks[i];
    if (!in.rank_symbol.empty()) {
      auto g = group_rank.find(in.rank_symbol);
      if (g != group_rank.end()) target = g->second;
    }
    if (target == 0 && parts.empty()) continue;  // the model's zero-rank default applies
    if (!in.scales.empty()) {
      build_int8(*set, i, in, parts, target);
      continue;
    }
    const size_t esize = dtype_size(in.dtype);
    const int fixed_axis = 1 - in.rank_axis;
    const int64_t fixed = parts.empty() ? in.fixed_dim() : parts[0].param->dims[fixed_axis];
    if (fixed < 0) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "LoRA input '" + in.name + "' shares the rank dim '" + in.rank_symbol +
                                            "' with inputs the active set feeds, but its fixed dim is unknown");
    }
    std::vector<int64_t> dims(2);
    dims[fixed_axis] = fixed;
    dims[in.rank_axis] = target;
    if (in.stacked) dims.insert(dims.begin(), 1);  // one slot of a stacked input: same bytes
    const size_t bytes = static_cast<size_t>(fixed) * static_cast<size_t>(target) * esize;
    const bool scaled_side = in.rank_axis == 0;  // B [r, out] carries the weight
    OrtValuePtr value;
    if (parts.empty()) {
      // Zeros of the group's rank: contributes nothing, keeps every input of the group the same rank.
      if (bytes > zeros_bytes) {
        zeros = aligned_buffer(bytes);
        std::memset(zeros.get(), 0, bytes);
        zeros_bytes = bytes;
        set->buffers_.push_back(zeros);
      }
      value = make_ort_tensor(in.dtype, dims, zeros.get(), bytes);
      set->blocks_.push_back({i, zeros.get(), fixed, target});
    } else if (parts.size() == 1 && target == ranks[i] && (!scaled_side || parts[0].weight == 1.0f) &&
               parts[0].param->dtype == in.dtype) {
      const Param& p = *parts[0].param;
      value = make_ort_tensor(p.dtype, dims, p.data, p.nbytes);  // zero-copy over the adapter's memory
      set->blocks_.push_back({i, p.data, fixed, target});
    } else {
      if (scaled_side && !dtype_is_float(in.dtype)) {
        for (const auto& c : parts) {
          if (c.weight != 1.0f) {
            fail(MLORA_STATUS_INVALID_ARGUMENT,
                 "cannot apply a weight to LoRA input '" + in.name + "' of dtype " + dtype_name(in.dtype));
          }
        }
      }
      auto buffer = aligned_buffer(bytes);
      compose(in, parts, fixed, target, static_cast<uint8_t*>(buffer.get()), bytes);
      value = make_ort_tensor(in.dtype, dims, buffer.get(), bytes);
      set->blocks_.push_back({i, buffer.get(), fixed, target});
      set->buffers_.push_back(std::move(buffer));
    }
    set->add_feed(in.name, std::move(value));
  }
  if (model->batch_kernel() == BatchKernel::kFused) {
    // The fused kernel reads each pair's rank from lora_ranks [P, 1] (slot 0 = this set, as lora_slot's
    // default [0] selects): the fed rank of the pair's A input, 0 for pairs the set does not feed.
    const size_t pairs = static_cast<size_t>(model->lora_pair_count());
    auto buffer = aligned_buffer(pairs * sizeof(int64_t));
    auto* r = static_cast<int64_t*>(buffer.get());
    std::fill(r, r + pairs, int64_t{0});
    for (const ActiveBlock& b : set->blocks_) {
      const LoraInput& in = inputs[b.input];
      if (in.pair >= 0) r[in.pair] = b.rank;
    }
    auto value = make_ort_tensor(MLORA_DTYPE_INT64, {static_cast<int64_t>(pairs), 1}, r, pairs * sizeof(int64_t));
    set->add_feed(kLoraRanksInput, std::move(value));
    set->buffers_.push_back(std::move(buffer));
  }
  for (const auto& n : set->feed_name_storage_) set->feed_names_.push_back(n.c_str());
  set->model_ = std::move(model);
  set->entries_ = std::move(entries);
  return set;
}

}  // namespace mlora
