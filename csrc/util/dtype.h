// Element types (ONNX TensorProto numbering) and the conversions composites need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "multilora/multilora.h"

namespace mlora {

// Size in bytes of one element; 0 for a dtype multilora does not support.
size_t dtype_size(int32_t dtype) noexcept;
// "float32", "float16", ... ; nullptr for a dtype multilora does not support (mlora_dtype_name's table).
const char* dtype_cname(int32_t dtype) noexcept;
// "float32", "float16", ... ; "dtype(N)" for unknown values.
std::string dtype_name(int32_t dtype);
// Throws INVALID_ARGUMENT naming `what` if dtype is not supported.
void check_dtype(int32_t dtype, const std::string& what);
// Element count of a shape; throws SHAPE_MISMATCH naming `what` on a negative dim or on overflow.
size_t element_count(const std::vector<int64_t>& shape, const std::string& what);
// "[4, 0]"
std::string shape_str(const std::vector<int64_t>& shape);

// Floating point conversions for float32/float16/bfloat16/float64 buffers (used to scale B by a weight).
bool dtype_is_float(int32_t dtype) noexcept;
float half_to_float(uint16_t h) noexcept;
uint16_t float_to_half(float f) noexcept;
float bfloat16_to_float(uint16_t b) noexcept;
// Element i of a buffer of a floating dtype (float32/16, bfloat16, float64) as float; 0 for any other dtype.
float element_to_float(int32_t dtype, const void* data, size_t i) noexcept;
// Whether dtype is one of the integer types token ids, masks and positions come in (int32, int64).
inline bool is_index_dtype(int32_t dtype) noexcept { return dtype == MLORA_DTYPE_INT64 || dtype == MLORA_DTYPE_INT32; }
uint16_t float_to_bfloat16(float f) noexcept;
// dst[i] = src[i] * scale, elementwise, for `count` elements of a floating dtype (computed in float32,
// float64 in double). src and dst may alias.
void scale_copy(int32_t dtype, const void* src, void* dst, size_t count, float scale);

}  // namespace mlora
