#include "adapter/dequantize.h"

#include <cstdlib>
#include <new>
#include <unordered_set>

#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

float scale_at(const void* scales, int32_t dtype, size_t i) {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT16:
      return half_to_float(static_cast<const uint16_t*>(scales)[i]);
    case MLORA_DTYPE_BFLOAT16:
      return bfloat16_to_float(static_cast<const uint16_t*>(scales)[i]);
    default:
      return static_cast<const float*>(scales)[i];
  }
}

// The `index`-th `bits`-wide value of a packed byte row (low bits first).
inline int32_t packed_at(const uint8_t* row, int64_t index, int64_t bits) {
  const int64_t bit = index * bits;
  return (row[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
}

std::string dims_str(const std::vector<int64_t>& d) { return shape_str(d); }

}  // namespace

void dequantize_nbits(const uint8_t* q, const void* scales, int32_t scales_dtype, const uint8_t* zero_points, int64_t K,
                      int64_t N, int64_t bits, int64_t block_size, float* out) {
  const int64_t blocks = (K + block_size - 1) / block_size;
  const int64_t blob = block_size * bits / 8;
  const int64_t zp_row = (blocks * bits + 7) / 8;
  const int32_t zp_default = 1 << (bits - 1);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float s = scale_at(scales, scales_dtype, static_cast<size_t>(n * blocks + b));
      const int32_t zp = zero_points ? packed_at(zero_points + n * zp_row, b, bits) : zp_default;
      const uint8_t* block = q + (n * blocks + b) * blob;
      const int64_t k0 = b * block_size;
      const int64_t k1 = std::min(K, k0 + block_size);
      for (int64_t k = k0; k < k1; ++k) {
        out[k * N + n] = static_cast<float>(packed_at(block, k - k0, bits) - zp) * s;
      }
    }
  }
}

std::shared_ptr<const Adapter> dequantize_adapter(std::shared_ptr<const Adapter> adapter, const Model& model,
                                                  const std::string& who) {
  const auto& targets = model.dequant_targets();
  if (targets.empty()) return adapter;
  bool any = false;
  for (const DequantTarget& t : targets) any |= adapter->find(t.weight) || adapter->find(t.scales);
  if (!any) return adapter;

  std::unordered_set<std::string> consumed;
  std::vector<Param> params;
  std::vector<std::shared_ptr<void>> owned;
  uint64_t owned_bytes = 0;
  for (const DequantTarget& t : targets) {
    const Param* q = adapter->find(t.weight);
    const Param* s = adapter->find(t.scales);
    const Param* z = t.zero_points.empty() ? nullptr : adapter->find(t.zero_points);
    if (!q && !s && !z) continue;
    if (!q || !s) {
      fail(MLORA_STATUS_FORMAT, who + ": parameter '" + (q ? t.weight : t.scales) + "' has no '" +
                                    (q ? t.scales : t.weight) +
                                    "' (a quantized LoRA weight needs its scales, and the scales their weight)");
    }
    if (q->dtype != MLORA_DTYPE_UINT8) {
      fail(MLORA_STATUS_TYPE_MISMATCH,
           who + ": quantized parameter '" + t.weight + "' has dtype " + dtype_name(q->dtype) + ", expected uint8");
    }
    if (!(s->dtype == MLORA_DTYPE_FLOAT32 || s->dtype == MLORA_DTYPE_FLOAT16 || s->dtype == MLORA_DTYPE_BFLOAT16)) {
      fail(MLORA_STATUS_TYPE_MISMATCH, who + ": scales '" + t.scales + "' have dtype " + dtype_name(s->dtype) +
                                           ", expected float32, float16 or bfloat16");
    }
    if (z && z->dtype != MLORA_DTYPE_UINT8) {
      fail(MLORA_STATUS_TYPE_MISMATCH, who + ": zero points '" + t.zero_points + "' have dtype " +
                                           dtype_name(z->dtype) + "; only packed uint8 zero points are supported");
    }
    const int64_t blob = t.block_size * t.bits / 8;
    if (q->dims.size() != 3 || q->dims[2] != blob) {
      fail(MLORA_STATUS_FORMAT, who + ": quantized parameter '" + t.weight + "' has shape " + dims_str(q->dims.vec()) +
                                    ", expected [N, blocks, " + std::to_string(blob) + "] (" + std::to_string(t.bits) +
                                    "-bit blocks of " + std::to_string(t.block_size) + ")");
    }
    const LoraInput* in = model.find_lora(t.target);
    const int64_t N = q->dims[0];
    int64_t K = 0;
    if (t.partner_weight.empty()) {
      K = in->dim0;  // A [in, r]: K is the model's in features, N the rank
    } else {
      const Param* pa = adapter->find(t.partner_weight);
      if (!pa || pa->dims.size() != 3) {
        fail(MLORA_STATUS_FORMAT, who + ": quantized parameter '" + t.weight + "' has no partner '" + t.partner_weight +
                                      "' (its dim 0 is the rank, B's K)");
      }
      K = pa->dims[0];  // B [r, out]: K is the rank
    }
    const int64_t blocks = (K + t.block_size - 1) / t.block_size;
    if (K <= 0 || q->dims[1] != blocks) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, who + ": quantized parameter '" + t.weight + "' has shape " +
                                            dims_str(q->dims.vec()) + " but K = " + std::to_string(K) + " needs " +
                                            std::to_string(blocks) + " blocks of " + std::to_string(t.block_size));
    }
    const size_t s_count = s->nbytes / dtype_size(s->dtype);
    if (static_cast<int64_t>(s_count) != N * blocks) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, who + ": scales '" + t.scales + "' have " + std::to_string(s_count) +
                                            " elements, expected " + std::to_string(N * blocks) + " (N " +
                                            std::to_string(N) + " x " + std::to_string(blocks) + " blocks)");
    }
    if (z && static_cast<int64_t>(z->nbytes) != N * ((blocks * t.bits + 7) / 8)) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, who + ": zero points '" + t.zero_points + "' have " +
                                            std::to_string(z->nbytes) + " bytes, expected " +
                                            std::to_string(N * ((blocks * t.bits + 7) / 8)));
    }
    const size_t bytes = static_cast<size_t>(K * N) * sizeof(float);
    void* raw = std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
    if (!raw) throw std::bad_alloc();
    std::shared_ptr<void> buffer(raw, [](void* p) { std::free(p); });
    dequantize_nbits(static_cast<const uint8_t*>(q->data), s->data, s->dtype,
                     z ? static_cast<const uint8_t*>(z->data) : nullptr, K, N, t.bits, t.block_size,
                     static_cast<float*>(buffer.get()));
    Param p;
    p.name = t.target;
    p.dtype = MLORA_DTYPE_FLOAT32;
    p.dims = {K, N};
    p.data = buffer.get();
    p.nbytes = bytes;
    if (t.bits <= 4) {
      // The file's scales, [blocks, N] float32, for int8 slots (|q - zero point| <= 15 fits int8): see Param.
      const size_t sbytes = static_cast<size_t>(blocks * N) * sizeof(float);
      void* sraw = std::aligned_alloc(64, ((sbytes + 63) / 64) * 64 + 64);
      if (!sraw) throw std::bad_alloc();
      std::shared_ptr<void> sbuf(sraw, [](void* q) { std::free(q); });
      auto* st = static_cast<float*>(sbuf.get());
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t b = 0; b < blocks; ++b)
          st[b * N + n] = scale_at(s->data, s->dtype, static_cast<size_t>(n * blocks + b));
      }
      p.block_scales = st;
      p.scale_block = t.block_size;
      owned.push_back(std::move(sbuf));
      owned_bytes += sbytes;
    }
    params.push_back(std::move(p));
    owned.push_back(std::move(buffer));
    owned_bytes += bytes;
    consumed.insert(t.weight);
    consumed.insert(t.scales);
    if (z) consumed.insert(t.zero_points);
  }
  for (const Param& p : adapter->params()) {
    if (!consumed.count(std::string(p.name))) params.push_back(p);
  }
  return Adapter::with_params(std::move(adapter), std::move(params), std::move(owned), owned_bytes);
}

}  // namespace mlora
