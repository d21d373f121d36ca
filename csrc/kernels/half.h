// Widening IEEE binary16 to float32 exactly, eight at a time, with portable integer vector operations (GCC/Clang
// vector extensions): what the fused kernel's default (pre-F16C) code path uses for float16 slots. No float
// arithmetic on subnormal operands (those can take microcode assists, or be flushed to zero under DAZ): a
// subnormal half is built as a normal float and corrected by one exact subtraction.
#pragma once

#include <cstdint>
#include <cstring>

namespace mlora {

inline void f16x8_to_f32(const uint16_t* src, float* dst) noexcept {
  typedef uint16_t u16x8 __attribute__((vector_size(16)));
  typedef uint32_t u32x8 __attribute__((vector_size(32)));
  typedef float f32x8 __attribute__((vector_size(32)));
  u16x8 h16;
  std::memcpy(&h16, src, sizeof(h16));
  const u32x8 h = __builtin_convertvector(h16, u32x8);
  u32x8 o = (h & 0x7fffu) << 13;          // exponent and mantissa, in float32's place
  const u32x8 e = o & 0x0f800000u;        // the half's exponent field there
  o += 0x38000000u;                       // rebias 15 -> 127
  o += (e == 0x0f800000u) & 0x38000000u;  // inf/NaN: exponent all ones (NaN payload kept)
  const u32x8 tiny = (u32x8)(e == 0u);    // zero or subnormal: m * 2^-24 = (2^-14 + m * 2^-24) - 2^-14
  f32x8 t;
  const u32x8 biased = o + 0x00800000u;
  std::memcpy(&t, &biased, sizeof(t));
  t -= 6.103515625e-05f;  // 2^-14, exact
  u32x8 tb;
  std::memcpy(&tb, &t, sizeof(tb));
  o = (tiny & tb) | (~tiny & o);
  o |= (h & 0x8000u) << 16;  // sign
  std::memcpy(dst, &o, sizeof(o));
}

}  // namespace mlora
