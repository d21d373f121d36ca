#include "util/dtype.h"

#include <cstring>
#include <limits>

#include "util/error.h"

namespace mlora {

namespace {

uint32_t float_bits(float f) noexcept {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Drops the low `shift` bits of `value` (1 <= shift <= 31), rounding to nearest, ties to even.
uint32_t shift_right_rne(uint32_t value, int shift) noexcept {
  const uint32_t half = 1u << (shift - 1);
  const uint32_t rest = value & ((1u << shift) - 1);
  uint32_t result = value >> shift;
  if (rest > half || (rest == half && (result & 1u))) ++result;
  return result;
}

// Elementwise dst[i] = convert_out(convert_in(src[i]) * scale) over raw bytes; memcpy keeps it free of
// aliasing and alignment assumptions (and compiles to plain loads/stores).
template <typename Stored, typename Compute, typename In, typename Out>
void scale_loop(const void* src, void* dst, size_t count, Compute scale, In to_compute, Out from_compute) {
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < count; ++i) {
    Stored v;
    std::memcpy(&v, s + i * sizeof(Stored), sizeof(Stored));
    const Stored r = from_compute(to_compute(v) * scale);
    std::memcpy(d + i * sizeof(Stored), &r, sizeof(Stored));
  }
}

}  // namespace

size_t dtype_size(int32_t dtype) noexcept {
  switch (dtype) {
    case MLORA_DTYPE_UINT8:
    case MLORA_DTYPE_INT8:
    case MLORA_DTYPE_BOOL:
      return 1;
    case MLORA_DTYPE_UINT16:
    case MLORA_DTYPE_INT16:
    case MLORA_DTYPE_FLOAT16:
    case MLORA_DTYPE_BFLOAT16:
      return 2;
    case MLORA_DTYPE_FLOAT32:
    case MLORA_DTYPE_INT32:
    case MLORA_DTYPE_UINT32:
      return 4;
    case MLORA_DTYPE_INT64:
    case MLORA_DTYPE_FLOAT64:
    case MLORA_DTYPE_UINT64:
      return 8;
    default:
      return 0;
  }
}

const char* dtype_cname(int32_t dtype) noexcept {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32:
      return "float32";
    case MLORA_DTYPE_UINT8:
      return "uint8";
    case MLORA_DTYPE_INT8:
      return "int8";
    case MLORA_DTYPE_UINT16:
      return "uint16";
    case MLORA_DTYPE_INT16:
      return "int16";
    case MLORA_DTYPE_INT32:
      return "int32";
    case MLORA_DTYPE_INT64:
      return "int64";
    case MLORA_DTYPE_BOOL:
      return "bool";
    case MLORA_DTYPE_FLOAT16:
      return "float16";
    case MLORA_DTYPE_FLOAT64:
      return "float64";
    case MLORA_DTYPE_UINT32:
      return "uint32";
    case MLORA_DTYPE_UINT64:
      return "uint64";
    case MLORA_DTYPE_BFLOAT16:
      return "bfloat16";
    default:
      return nullptr;
  }
}

std::string dtype_name(int32_t dtype) {
  const char* name = dtype_cname(dtype);
  return name ? std::string(name) : "dtype(" + std::to_string(dtype) + ")";
}

void check_dtype(int32_t dtype, const std::string& what) {
  if (dtype_size(dtype) == 0) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, what + ": unsupported dtype " + dtype_name(dtype) +
                                            " (supported: float32, float16, bfloat16, float64, int8, uint8, int16, "
                                            "uint16, int32, uint32, int64, uint64, bool)");
  }
}

size_t element_count(const std::vector<int64_t>& shape, const std::string& what) {
  // Negative dims first, so [-1, 0] is reported as negative rather than counted as empty.
  for (int64_t d : shape) {
    if (d < 0)
      fail(MLORA_STATUS_SHAPE_MISMATCH,
           what + ": negative dimension " + std::to_string(d) + " in shape " + shape_str(shape));
  }
  // A zero dim makes the tensor empty whatever the other dims are (no overflow possible then).
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  size_t count = 1;
  for (int64_t d : shape) {
    if (static_cast<uint64_t>(d) > std::numeric_limits<size_t>::max() ||
        __builtin_mul_overflow(count, static_cast<size_t>(d), &count)) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, what + ": element count of shape " + shape_str(shape) + " overflows");
    }
  }
  return count;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

bool dtype_is_float(int32_t dtype) noexcept {
  return dtype == MLORA_DTYPE_FLOAT32 || dtype == MLORA_DTYPE_FLOAT16 || dtype == MLORA_DTYPE_BFLOAT16 ||
         dtype == MLORA_DTYPE_FLOAT64;
}

// IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
float half_to_float(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf, or NaN keeping its payload
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float32 (mant has at most 10 significant bits).
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;  // 2^-24
    return bits_float(sign | float_bits(magnitude));
  }
  return bits_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

uint16_t float_to_half(float f) noexcept {
  const uint32_t bits = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;

  if (abs >= 0x7f800000u) {  // inf or NaN
    if (abs == 0x7f800000u) return sign | 0x7c00u;
    // NaN: keep the top payload bits and force the quiet bit so the payload never truncates to inf.
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  const int exp = static_cast<int>(abs >> 23) - 127;  // unbiased float32 exponent
  if (exp >= 16) return sign | 0x7c00u;               // >= 2^16: beyond the largest half (65504) even after rounding
  if (exp >= -14) {
    // Normal half. Rebias the exponent and round the 23-bit mantissa to 10 bits; a carry out of the mantissa
    // correctly bumps the exponent (and turns 65520+ into inf, 0x7c00).
    const uint32_t rebased = (static_cast<uint32_t>(exp + 15) << 23) | (abs & 0x7fffffu);
    return static_cast<uint16_t>(sign | shift_right_rne(rebased, 13));
  }
  if (exp < -25) return sign;  // below half the smallest subnormal (2^-25): rounds to zero
  // Subnormal half: value / 2^-24 = significand * 2^(exp + 1), with the implicit bit made explicit. The shift is
  // 14..24; rounding up from the largest subnormal yields 0x0400, the smallest normal, as it should.
  const uint32_t significand = (abs & 0x7fffffu) | 0x800000u;
  return static_cast<uint16_t>(sign | shift_right_rne(significand, -(exp + 1)));
}

float bfloat16_to_float(uint16_t b) noexcept { return bits_float(static_cast<uint32_t>(b) << 16); }

uint16_t float_to_bfloat16(float f) noexcept {
  const uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  // Round to nearest even on the dropped 16 bits; overflow rounds up to inf, as IEEE wants.
  return static_cast<uint16_t>(shift_right_rne(bits, 16));
}

void scale_copy(int32_t dtype, const void* src, void* dst, size_t count, float scale) {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32:
      scale_loop<float>(src, dst, count, scale, [](float v) { return v; }, [](float v) { return v; });
      return;
    case MLORA_DTYPE_FLOAT64:
      scale_loop<double>(
          src, dst, count, static_cast<double>(scale), [](double v) { return v; }, [](double v) { return v; });
      return;
    case MLORA_DTYPE_FLOAT16:
      scale_loop<uint16_t>(src, dst, count, scale, half_to_float, float_to_half);
      return;
    case MLORA_DTYPE_BFLOAT16:
      scale_loop<uint16_t>(src, dst, count, scale, bfloat16_to_float, float_to_bfloat16);
      return;
    default:
      fail(MLORA_STATUS_INVALID_ARGUMENT, "scale_copy: " + dtype_name(dtype) + " is not a floating-point dtype");
  }
}

float element_to_float(int32_t dtype, const void* data, size_t i) noexcept {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32:
      return static_cast<const float*>(data)[i];
    case MLORA_DTYPE_FLOAT16:
      return half_to_float(static_cast<const uint16_t*>(data)[i]);
    case MLORA_DTYPE_BFLOAT16:
      return bfloat16_to_float(static_cast<const uint16_t*>(data)[i]);
    case MLORA_DTYPE_FLOAT64:
      return static_cast<float>(static_cast<const double*>(data)[i]);
    default:
      return 0.0f;
  }
}

}  // namespace mlora
