// Quantized LoRA tensors (the MatMulNBits weight/scales/zero points of int4 builder models) into float32.
#pragma once

#include <cstdint>
#include <memory>

#include "adapter/adapter.h"
#include "model/model.h"

namespace mlora {

// The float matrix a MatMulNBits node multiplies by (Y = X · out), as float32 [K, N] row-major:
//   out[k, n] = (q(n, k) - zp(n, k / block_size)) * scale[n, k / block_size]
// q: uint8 [N, blocks, block_size*bits/8], element k of row n at bit (k % block_size)*bits of its block, low
// bits first; scales: float32/float16/bfloat16 [N * blocks]; zero_points: uint8 [N * ceil(blocks*bits/8)]
// packed the same way, or nullptr (then 2^(bits-1), the symmetric default).
void dequantize_nbits(const uint8_t* q, const void* scales, int32_t scales_dtype, const uint8_t* zero_points, int64_t K,
                      int64_t N, int64_t bits, int64_t block_size, float* out);

// A model prepared for adapter-aware batching from a quantized-LoRA model declares float LoRA inputs in
// place of the MatMulNBits ones (Model::dequant_targets). Returns `adapter` with every quantized group it
// holds for such an input replaced by the dequantized float32 parameter (a view owning the new buffers), or
// `adapter` itself when it holds none. Throws FORMAT (a group incomplete, shapes that do not fit together)
// and TYPE_MISMATCH (dtypes MatMulNBits does not take), naming the parameter.
std::shared_ptr<const Adapter> dequantize_adapter(std::shared_ptr<const Adapter> adapter, const Model& model,
                                                  const std::string& who);

}  // namespace mlora
