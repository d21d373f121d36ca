#include "kernels/lora_slot_matmul.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "kernels/half.h"
#include "ort/ort.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One build runs everywhere; the loader picks the widest clone the CPU has (GCC function multiversioning).
#define MLORA_FMV 1
#define MLORA_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#define MLORA_INLINE inline __attribute__((always_inline))
#else
#define MLORA_FMV 0
#define MLORA_CLONES
#define MLORA_INLINE inline
#endif

constexpr int64_t kChunk = 16;  // rank columns (and output columns) held in registers at a time

// Eight floats as one value (GCC/Clang vector extension): an AVX register in the AVX2 clones, two SSE
// registers in the default one. Written out so the compiler keeps accumulators in registers instead of
// vectorizing across tokens with shuffles (what it did with plain loops: 3x slower in prefill).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // v8 never crosses a call: every user is always_inline
#endif
typedef float v8 __attribute__((vector_size(32)));
MLORA_INLINE v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
MLORA_INLINE void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

// A and B element types: float32, or 16-bit floats widened to float in registers (fp32 accumulation), or
// int8 with float32 scales per block of kQBlock rows along K (kScaled). Besides the scales, the loads are the
// only place the element type shows.
constexpr int64_t kQBlock = 32;  // int8 slots: rows of A (input rows) / of B (rank rows) per scale
struct F32 {
  static constexpr bool kScaled = false;
  using T = float;
  static MLORA_INLINE v8 load(const T* p) { return load8(p); }
  static MLORA_INLINE float one(const T* p) { return *p; }
};
// bfloat16 = the top half of a float32: widen to 32 bits and shift.
struct BF16 {
  static constexpr bool kScaled = false;
  using T = uint16_t;
  static MLORA_INLINE v8 load(const T* p) {
    typedef uint16_t u16x8 __attribute__((vector_size(16)));
    typedef uint32_t u32x8 __attribute__((vector_size(32)));
    u16x8 h;
    std::memcpy(&h, p, sizeof(h));
    const u32x8 w = __builtin_convertvector(h, u32x8) << 16;
    v8 v;
    std::memcpy(&v, &w, sizeof(v));
    return v;
  }
  static MLORA_INLINE float one(const T* p) { return bfloat16_to_float(*p); }
};
// IEEE binary16, portable: exact integer widening (kernels/half.h). The x86-64-v3/v4 code paths use F16C below.
struct F16 {
  static constexpr bool kScaled = false;
  using T = uint16_t;
  static MLORA_INLINE v8 load(const T* p) {
    float f[8];
    f16x8_to_f32(p, f);
    return load8(f);
  }
  static MLORA_INLINE float one(const T* p) { return half_to_float(*p); }
};
#if MLORA_FMV
// vcvtph2ps (F16C, in x86-64-v3 and v4): eight halves to eight floats in one instruction. Inline assembly, not
// the intrinsic: an intrinsic's target("f16c") cannot be inlined through the always_inline helpers, which carry
// no target of their own; only the x86-64-v3/v4 versions of lora_rows_f16 below use this. Each fast struct is
// its portable one (element type, scalar `one`) with another vector `load`.
struct F16C : F16 {
  static MLORA_INLINE v8 load(const T* p) {
    v8 v;
    __asm__("vcvtph2ps %1, %0" : "=x"(v) : "m"(*reinterpret_cast<const uint8_t (*)[16]>(p)));
    return v;
  }
};
// bfloat16 the same way: zero-extend eight 16-bit values to 32 bits straight from memory, shift into the top
// half. GCC compiled BF16's vector-extension version into stores and reloads through the stack (the cached
// bfloat16 row took 2.3x the float16 one in benchmarks/kernel_rows.cpp).
struct BF16X : BF16 {
  static MLORA_INLINE v8 load(const T* p) {
    v8 v;
    __asm__("vpmovzxwd %1, %0\n\tvpslld $16, %0, %0" : "=x"(v) : "m"(*reinterpret_cast<const uint8_t (*)[16]>(p)));
    return v;
  }
};
#endif
// int8, sign-extended and converted to float in registers: exact. Portable; GCC 12 turns this
// __builtin_convertvector into eight scalar vcvtsi2ss (seen in the disassembly: the int8 kernel then cost twice
// the float32 one), so the x86-64-v3/v4 versions of lora_rows_i8 use I8X below.
struct I8 {
  static constexpr bool kScaled = true;
  using T = int8_t;
  static MLORA_INLINE v8 load(const T* p) {
    typedef int8_t i8x8 __attribute__((vector_size(8)));
    i8x8 q;
    std::memcpy(&q, p, sizeof(q));
    return __builtin_convertvector(q, v8);
  }
  static MLORA_INLINE float one(const T* p) { return static_cast<float>(*p); }
};
#if MLORA_FMV
// vpmovsxbd + vcvtdq2ps (AVX2): eight int8 to eight floats in two instructions; inline assembly for the reason
// given at F16C.
struct I8X : I8 {
  static MLORA_INLINE v8 load(const T* p) {
    v8 v;
    __asm__("vpmovsxbd %1, %0\n\tvcvtdq2ps %0, %0" : "=x"(v) : "m"(*reinterpret_cast<const uint8_t (*)[8]>(p)));
    return v;
  }
};
#endif

// t[k][0..16) = x[k] · A[:, c0..c0+16) for M tokens: the accumulators stay in registers across all of `in`,
// so A streams through once with no store-to-load chains. With few tokens (decode: M = 1) U = 4/M partial
// sums over interleaved rows of A keep 8 independent FMA chains in flight instead of 2 (FMA latency, not
// memory, limited the M = 1 loop otherwise). int8 A (E::kScaled): the sums run over one block of kQBlock
// input rows at a time and are then multiplied by that block's scales sa[block, c0..c0+16) (sa: [blocks, r]).
template <class E, int M>
MLORA_INLINE void xa_chunk(const float* x, const typename E::T* a, const float* sa, float (*t)[kChunk], int64_t in,
                           int64_t r, int64_t c0) {
  constexpr int U = M >= 4 ? 1 : 4 / M;
  v8 acc[U][M][2];
  v8 tot[M][2];
  for (int u = 0; u < U; ++u) {
    for (int k = 0; k < M; ++k) acc[u][k][0] = acc[u][k][1] = v8{};
  }
  for (int k = 0; k < M; ++k) tot[k][0] = tot[k][1] = v8{};
  const int64_t span = E::kScaled ? kQBlock : in;
  for (int64_t i0 = 0; i0 < in; i0 += span) {
    const int64_t i1 = std::min(in, i0 + span);
    int64_t i = i0;
    for (; i + U <= i1; i += U) {
      for (int u = 0; u < U; ++u) {
        const typename E::T* ar = a + (i + u) * r + c0;
        const v8 a0 = E::load(ar), a1 = E::load(ar + 8);
        for (int k = 0; k < M; ++k) {
          const float xi = x[k * in + i + u];
          acc[u][k][0] += a0 * xi;
          acc[u][k][1] += a1 * xi;
        }
      }
    }
    for (; i < i1; ++i) {
      const typename E::T* ar = a + i * r + c0;
      const v8 a0 = E::load(ar), a1 = E::load(ar + 8);
      for (int k = 0; k < M; ++k) {
        const float xi = x[k * in + i];
        acc[0][k][0] += a0 * xi;
        acc[0][k][1] += a1 * xi;
      }
    }
    if constexpr (E::kScaled) {
      const float* sr = sa + (i0 / kQBlock) * r + c0;
      const v8 s0 = load8(sr), s1 = load8(sr + 8);
      for (int k = 0; k < M; ++k) {
        for (int u = 1; u < U; ++u) {
          acc[0][k][0] += acc[u][k][0];
          acc[0][k][1] += acc[u][k][1];
          acc[u][k][0] = acc[u][k][1] = v8{};
        }
        tot[k][0] += acc[0][k][0] * s0;
        tot[k][1] += acc[0][k][1] * s1;
        acc[0][k][0] = acc[0][k][1] = v8{};
      }
    }
  }
  if constexpr (!E::kScaled) {
    for (int u = 1; u < U; ++u) {
      for (int k = 0; k < M; ++k) {
        acc[0][k][0] += acc[u][k][0];
        acc[0][k][1] += acc[u][k][1];
      }
    }
    for (int k = 0; k < M; ++k) {
      tot[k][0] = acc[0][k][0];
      tot[k][1] = acc[0][k][1];
    }
  }
  for (int k = 0; k < M; ++k) {
    store8(t[k], tot[k][0]);
    store8(t[k] + 8, tot[k][1]);
  }
}

// t[k][0..8) = x[k] · A[:, c0..c0+8) for M tokens: xa_chunk for an 8-column chunk (rank 8, PEFT's default, or
// the first 8 of a 9..15-column tail), one vector per token and U = 8/M interleaved rows of A for few tokens.
// (The scalar xa_tail made a rank-8 decode row 2x (float32) to 4x (16-bit slots) slower than a rank-16 one.)
// int8 A: per block of kQBlock rows, as in xa_chunk.
template <class E, int M>
MLORA_INLINE void xa_chunk8(const float* x, const typename E::T* a, const float* sa, float (*t)[kChunk], int64_t in,
                            int64_t r, int64_t c0) {
  constexpr int U = M >= 8 ? 1 : 8 / M;
  v8 acc[U][M];
  v8 tot[M];
  for (int u = 0; u < U; ++u) {
    for (int k = 0; k < M; ++k) acc[u][k] = v8{};
  }
  for (int k = 0; k < M; ++k) tot[k] = v8{};
  const int64_t span = E::kScaled ? kQBlock : in;
  for (int64_t i0 = 0; i0 < in; i0 += span) {
    const int64_t i1 = std::min(in, i0 + span);
    int64_t i = i0;
    for (; i + U <= i1; i += U) {
      for (int u = 0; u < U; ++u) {
        const v8 av = E::load(a + (i + u) * r + c0);
        for (int k = 0; k < M; ++k) acc[u][k] += av * x[k * in + i + u];
      }
    }
    for (; i < i1; ++i) {
      const v8 av = E::load(a + i * r + c0);
      for (int k = 0; k < M; ++k) acc[0][k] += av * x[k * in + i];
    }
    if constexpr (E::kScaled) {
      const v8 sv = load8(sa + (i0 / kQBlock) * r + c0);
      for (int k = 0; k < M; ++k) {
        for (int u = 1; u < U; ++u) {
          acc[0][k] += acc[u][k];
          acc[u][k] = v8{};
        }
        tot[k] += acc[0][k] * sv;
        acc[0][k] = v8{};
      }
    }
  }
  if constexpr (!E::kScaled) {
    for (int u = 1; u < U; ++u) {
      for (int k = 0; k < M; ++k) acc[0][k] += acc[u][k];
    }
    for (int k = 0; k < M; ++k) tot[k] = acc[0][k];
  }
  for (int k = 0; k < M; ++k) store8(t[k], tot[k]);
}

// The same for the last c < 16 columns into t[k][off..off+c): scalar, the 8-column part vectorized first (int8:
// each element times its block's scale).
template <class E>
MLORA_INLINE void xa_tail(const float* x, const typename E::T* a, const float* sa, float (*t)[kChunk], int64_t m,
                          int64_t in, int64_t r, int64_t c0, int64_t c, int64_t off = 0) {
  for (int64_t k = 0; k < m; ++k) std::fill(t[k] + off, t[k] + off + c, 0.0f);
  float ar[kChunk];
  for (int64_t i = 0; i < in; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      ar[j] = E::one(a + i * r + c0 + j);
      if constexpr (E::kScaled) ar[j] *= sa[(i / kQBlock) * r + c0 + j];
    }
    for (int64_t k = 0; k < m; ++k) {
      const float xi = x[k * in + i];
      for (int64_t j = 0; j < c; ++j) t[k][off + j] += xi * ar[j];
    }
  }
}

// y[k, o0..o0+16·NC) (+)= t[k, 0..c) · B[c0..c0+c, o0..o0+16·NC) for M tokens: the 16·NC x M outputs stay in
// registers across the chunk's c <= 16 rank rows, so y is read and written once per chunk; NC = 4/M output
// chunks at a time keep 8 independent FMA chains for small M. int8 B: a chunk's rank rows lie in one block of
// kQBlock (c0 is a multiple of 16), so the chunk's sum is multiplied by that block's scale row sb[o0..).
template <class E, int M, int NC>
MLORA_INLINE void tb_block(const float (*t)[kChunk], const typename E::T* b, const float* sb, float* y, int64_t c,
                           int64_t out, int64_t ldy, int64_t c0, int64_t o0, bool first) {
  v8 acc[M][2 * NC];
  for (int k = 0; k < M; ++k) {
    for (int q = 0; q < 2 * NC; ++q) acc[k][q] = first || E::kScaled ? v8{} : load8(y + k * ldy + o0 + 8 * q);
  }
  for (int64_t j = 0; j < c; ++j) {
    const typename E::T* brow = b + (c0 + j) * out + o0;
    v8 bq[2 * NC];
    for (int q = 0; q < 2 * NC; ++q) bq[q] = E::load(brow + 8 * q);
    for (int k = 0; k < M; ++k) {
      const float tj = t[k][j];
      for (int q = 0; q < 2 * NC; ++q) acc[k][q] += bq[q] * tj;
    }
  }
  if constexpr (E::kScaled) {
    const float* srow = sb + o0;
    for (int q = 0; q < 2 * NC; ++q) {
      const v8 sq = load8(srow + 8 * q);
      for (int k = 0; k < M; ++k) {
        const v8 prev = first ? v8{} : load8(y + k * ldy + o0 + 8 * q);
        acc[k][q] = prev + acc[k][q] * sq;
      }
    }
  }
  for (int k = 0; k < M; ++k) {
    for (int q = 0; q < 2 * NC; ++q) store8(y + k * ldy + o0 + 8 * q, acc[k][q]);
  }
}

// y[0..out) (+)= t[0..c) · B[c0..c0+c, :) for ONE token (decode), B read rank row after rank row: one
// sequential stream. tb_block instead holds its outputs in registers and reads the c rank rows side by side, c
// short strided streams at once; with a single token there is too little arithmetic per byte to hide the misses
// that pattern leaves to the hardware prefetchers: a decode row (A + B of one slot) took 1.3x (float32) to 1.9x
// (float16) as long from memory that way (docs/notes.md, 2026-12-07). y (out floats) stays in L1 across the c
// passes; each element is updated in the same order (rank row by rank row, one multiply-add each) as in
// tb_block. int8 B: each rank row's product is multiplied by the chunk's scale row sb (in L1 with y) before it
// is added: the same scales tb_block applies to the chunk's sum, one multiplication more per element.
template <class E>
MLORA_INLINE void tb_stream(const float* t, const typename E::T* b, const float* sb, float* y, int64_t c, int64_t out,
                            int64_t c0, bool first) {
  const int64_t out8 = out - out % 8;
  auto term = [&](const typename E::T* row, int64_t o, float tj) {
    if constexpr (E::kScaled) return E::load(row + o) * tj * load8(sb + o);
    return E::load(row + o) * tj;
  };
  auto term1 = [&](const typename E::T* row, int64_t o, float tj) {
    if constexpr (E::kScaled) return E::one(row + o) * tj * sb[o];
    return E::one(row + o) * tj;
  };
  for (int64_t j = 0; j < c; ++j) {
    const typename E::T* row = b + (c0 + j) * out;
    const float tj = t[j];
    int64_t o = 0;
    if (first && j == 0) {
      for (; o + 32 <= out8; o += 32) {
        for (int q = 0; q < 4; ++q) store8(y + o + 8 * q, term(row, o + 8 * q, tj));
      }
      for (; o < out8; o += 8) store8(y + o, term(row, o, tj));
      for (; o < out; ++o) y[o] = term1(row, o, tj);
    } else {
      for (; o + 32 <= out8; o += 32) {
        for (int q = 0; q < 4; ++q) store8(y + o + 8 * q, term(row, o + 8 * q, tj) + load8(y + o + 8 * q));
      }
      for (; o < out8; o += 8) store8(y + o, term(row, o, tj) + load8(y + o));
      for (; o < out; ++o) y[o] = term1(row, o, tj) + y[o];
    }
  }
}

// sa, sb: int8 slots' scales (A: [ceil(in/32), r], B: [ceil(r/32), out]); unused for float slots.
template <class E, int M>
MLORA_INLINE void rows_m(const float* x, const typename E::T* a, const typename E::T* b, const float* sa,
                         const float* sb, float* y, int64_t in, int64_t r, int64_t out, int64_t ldy, bool add) {
  float t[M][kChunk];
  const int64_t out_full = out - out % kChunk;
  for (int64_t c0 = 0; c0 < r; c0 += kChunk) {
    const int64_t c = std::min(kChunk, r - c0);
    if (c == kChunk) {
      xa_chunk<E, M>(x, a, sa, t, in, r, c0);
    } else if (c >= 8) {
      xa_chunk8<E, M>(x, a, sa, t, in, r, c0);
      if (c > 8) xa_tail<E>(x, a, sa, t, M, in, r, c0 + 8, c - 8, 8);
    } else {
      xa_tail<E>(x, a, sa, t, M, in, r, c0, c);
    }
    const bool first = c0 == 0 && !add;  // add: y holds the base output already
    const float* sbc = E::kScaled ? sb + (c0 / kQBlock) * out : nullptr;
    if constexpr (M == 1) {
      tb_stream<E>(t[0], b, sbc, y, c, out, c0, first);
      continue;
    }
    constexpr int NC = M >= 4 ? 1 : 4 / M;
    int64_t o0 = 0;
    for (; o0 + NC * kChunk <= out_full; o0 += NC * kChunk)
      tb_block<E, M, NC>(t, b, sbc, y, c, out, ldy, c0, o0, first);
    for (; o0 < out_full; o0 += kChunk) tb_block<E, M, 1>(t, b, sbc, y, c, out, ldy, c0, o0, first);
    for (int k = 0; k < M; ++k) {  // the last out % 16 outputs
      for (int64_t o = out_full; o < out; ++o) {
        if constexpr (E::kScaled) {
          float v = 0.0f;
          for (int64_t j = 0; j < c; ++j) v += t[k][j] * E::one(b + (c0 + j) * out + o);
          y[k * ldy + o] = first ? v * sbc[o] : y[k * ldy + o] + v * sbc[o];
        } else {
          float v = first ? 0.0f : y[k * ldy + o];
          for (int64_t j = 0; j < c; ++j) v += t[k][j] * E::one(b + (c0 + j) * out + o);
          y[k * ldy + o] = v;
        }
      }
    }
  }
}

// y[t, :] (+)= (x[t, :] · A[in, r]) · B[r, out] for n tokens (add: y holds the base output and the LoRA term
// is added to it; else y is overwritten); A packed [in, r], B [r, out] row-major; r > 0; y's rows ldy >= out
// floats apart (wider when the op writes a column range of a packed output).
// Tokens go four at a time so each A and B element loaded serves four of them; rank in chunks of 16.
template <class E>
MLORA_INLINE void lora_rows(const float* x, const typename E::T* a, const typename E::T* b, const float* sa,
                            const float* sb, float* y, int64_t n, int64_t in, int64_t r, int64_t out, int64_t ldy,
                            bool add) {
  int64_t t0 = 0;
  for (; t0 + 4 <= n; t0 += 4) rows_m<E, 4>(x + t0 * in, a, b, sa, sb, y + t0 * ldy, in, r, out, ldy, add);
  switch (n - t0) {
    case 3:
      rows_m<E, 3>(x + t0 * in, a, b, sa, sb, y + t0 * ldy, in, r, out, ldy, add);
      break;
    case 2:
      rows_m<E, 2>(x + t0 * in, a, b, sa, sb, y + t0 * ldy, in, r, out, ldy, add);
      break;
    case 1:
      rows_m<E, 1>(x + t0 * in, a, b, sa, sb, y + t0 * ldy, in, r, out, ldy, add);
      break;
    default:
      break;
  }
}

// One multiversioned entry per element type (target_clones on templates is not portable across GCC versions).
// sa, sb: int8 slots' scales (null for float slots).
#define MLORA_ROWS_ARGS                                                                                            \
  const float *x, const void *a, const void *b, const float *sa, const float *sb, float *y, int64_t n, int64_t in, \
      int64_t r, int64_t out, int64_t ldy, bool add
MLORA_CLONES
void lora_rows_f32(MLORA_ROWS_ARGS) {
  lora_rows<F32>(x, static_cast<const float*>(a), static_cast<const float*>(b), sa, sb, y, n, in, r, out, ldy, add);
}
// The 16-bit and int8 entries: versions by target instead of clones. The default version widens with the
// portable `Portable` loads (integer operations), the x86-64-v3/v4 versions with `Fast`, one instruction sequence
// in inline assembly: F16C (float16), a zero-extending load and a shift (bfloat16), vpmovsxbd + vcvtdq2ps (int8).
#if MLORA_FMV
#define MLORA_ROWS_VERSION(target_name, name, T, E)                                                          \
  __attribute__((target(target_name))) void name(MLORA_ROWS_ARGS) {                                          \
    lora_rows<E>(x, static_cast<const T*>(a), static_cast<const T*>(b), sa, sb, y, n, in, r, out, ldy, add); \
  }
#define MLORA_ROWS_VERSIONS(name, T, Portable, Fast)  \
  MLORA_ROWS_VERSION("default", name, T, Portable)    \
  MLORA_ROWS_VERSION("arch=x86-64-v3", name, T, Fast) \
  MLORA_ROWS_VERSION("arch=x86-64-v4", name, T, Fast)
#else
#define MLORA_ROWS_VERSIONS(name, T, Portable, Fast)                                                                \
  void name(MLORA_ROWS_ARGS) {                                                                                      \
    lora_rows<Portable>(x, static_cast<const T*>(a), static_cast<const T*>(b), sa, sb, y, n, in, r, out, ldy, add); \
  }
#endif
MLORA_ROWS_VERSIONS(lora_rows_f16, uint16_t, F16, F16C)
MLORA_ROWS_VERSIONS(lora_rows_bf16, uint16_t, BF16, BF16X)
MLORA_ROWS_VERSIONS(lora_rows_i8, int8_t, I8, I8X)
#undef MLORA_ROWS_VERSIONS
#undef MLORA_ROWS_VERSION
#undef MLORA_ROWS_ARGS

using RowsFn = void (*)(const float*, const void*, const void*, const float*, const float*, float*, int64_t, int64_t,
                        int64_t, int64_t, int64_t, bool);

struct Kernel {
  const OrtApi* api = nullptr;
  int64_t pair = 0;
  // column_offset given: base may be wider than B's output size (a packed q/k/v output) and the LoRA term goes
  // to its columns [column_offset, column_offset + out); without it base is exactly x's shape with out.
  bool packed = false;
  int64_t column_offset = 0;
  std::string node;  // for messages
};

constexpr size_t kInputs = 8;       // x, A, B, lora_slot, lora_ranks, base, A_scales, B_scales (the last 3 optional)
constexpr size_t kBaseInput = 5;    // the base MatMul's output: y = base + LoRA (prepare-batching folds the Add)
constexpr size_t kScalesInput = 6;  // A_scales, then B_scales: int8 slots only
constexpr size_t kMaxDims = 8;      // x is [batch, seq, in] from prepare-batching; anything deeper is refused

// An input's element type and shape, without allocating (compute runs once per pair per step).
struct Shape {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  int64_t dims[kMaxDims] = {};
  int64_t back() const { return dims[rank - 1]; }
  bool operator==(const Shape& o) const {
    return type == o.type && rank == o.rank && std::equal(dims, dims + rank, o.dims);
  }
};

std::string dims_text(const Shape& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.rank; ++i) t += (i ? ", " : "") + std::to_string(s.dims[i]);
  return t + "]";
}

// Everything a compute needs, checked; work item i = (row, token block).
struct Job {
  RowsFn rows;
  size_t esize;  // bytes per A/B element
  const float* x;
  const uint8_t* a;
  const uint8_t* b;
  const float* sa;  // int8 slots: A's scales [S, ceil(in/32), R], B's [S, ceil(R/32), out]; else null
  const float* sb;
  const float* base;  // null: y = LoRA term alone; y itself when ONNX Runtime ran the op in place
  float* y;
  const int64_t* slot;
  const int64_t* ranks;  // this pair's row of lora_ranks
  size_t slot_count;     // 1 (broadcast) or batch
  int64_t tokens, in, R, out, S;
  int64_t width, column;       // y's (and base's) last dim; the first of the `out` columns the LoRA term adds to
  int64_t a_blocks, b_blocks;  // int8: ceil(in/32), ceil(R/32)
  int64_t blocks_per_row;
  static constexpr int64_t kBlock = 16;
};

void run_item(void* data, size_t item) {
  const Job& j = *static_cast<const Job*>(data);
  const int64_t row = static_cast<int64_t>(item) / j.blocks_per_row;
  const int64_t t0 = (static_cast<int64_t>(item) % j.blocks_per_row) * Job::kBlock;
  const int64_t n = std::min(Job::kBlock, j.tokens - t0);
  const int64_t s = j.slot[j.slot_count == 1 ? 0 : row];
  const int64_t r = j.ranks[s];
  const int64_t off = (row * j.tokens + t0) * j.width;
  float* y = j.y + off;
  const size_t bytes = static_cast<size_t>(n * j.width) * sizeof(float);
  if (j.base && j.base != j.y) std::memcpy(y, j.base + off, bytes);
  if (r == 0) {
    if (!j.base) std::memset(y, 0, bytes);
    return;
  }
  const size_t a_off = static_cast<size_t>(s * j.in * j.R) * j.esize;
  const size_t b_off = static_cast<size_t>(s * j.R * j.out) * j.esize;
  const float* sa = j.sa ? j.sa + s * j.a_blocks * j.R : nullptr;
  const float* sb = j.sb ? j.sb + s * j.b_blocks * j.out : nullptr;
  j.rows(j.x + (row * j.tokens + t0) * j.in, j.a + a_off, j.b + b_off, sa, sb, y + j.column, n, j.in, r, j.out, j.width,
         j.base != nullptr);
}

OrtStatus* invalid(const Kernel& k, const std::string& what) {
  return k.api->CreateStatus(ORT_INVALID_ARGUMENT,
                             (std::string(kLoraSlotMatMulOp) + " node '" + k.node + "': " + what).c_str());
}

#define MLORA_ORT_TRY(expr)                  \
  do {                                       \
    if (OrtStatus* st_ = (expr)) return st_; \
  } while (0)

// false: more than kMaxDims dimensions (out.rank holds the count).
OrtStatus* shape_of(const OrtApi& api, const OrtValue* v, Shape& out, bool& fits) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  MLORA_ORT_TRY(api.GetTensorTypeAndShape(v, &info));
  OrtStatus* st = api.GetTensorElementType(info, &out.type);
  if (!st) st = api.GetDimensionsCount(info, &out.rank);
  fits = out.rank <= kMaxDims;
  if (!st && fits) st = api.GetDimensions(info, out.dims, out.rank);
  api.ReleaseTensorTypeAndShapeInfo(info);
  return st;
}

RowsFn rows_for(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return lora_rows_f32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return lora_rows_f16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return lora_rows_bf16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return lora_rows_i8;
    default:
      return nullptr;
  }
}

OrtStatus* compute(Kernel& k, OrtKernelContext* ctx) {
  const OrtApi& api = *k.api;
  const OrtValue* v[kInputs] = {};
  Shape sh[kInputs];
  static const char* const kNames[kInputs] = {"x", "A", "B", "lora_slot", "lora_ranks", "base", "A_scales", "B_scales"};
  size_t count = 0;
  MLORA_ORT_TRY(api.KernelContext_GetInputCount(ctx, &count));
  for (size_t i = 0; i < kInputs; ++i) {
    if (i < count) MLORA_ORT_TRY(api.KernelContext_GetInput(ctx, i, &v[i]));
    if (!v[i]) {
      if (i >= kBaseInput) continue;  // optional: y is the LoRA term alone; scales: checked below
      return invalid(k, std::string("input ") + kNames[i] + " is missing");
    }
    bool fits = true;
    MLORA_ORT_TRY(shape_of(api, v[i], sh[i], fits));
    if (!fits) {
      return invalid(k, std::string("input ") + kNames[i] + " has " + std::to_string(sh[i].rank) +
                            " dimensions; at most " + std::to_string(kMaxDims) + " are supported");
    }
  }
  if (sh[0].type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    return invalid(k, "x is " + dtype_name(static_cast<int32_t>(sh[0].type)) + "; expected float32");
  }
  if (sh[1].type != sh[2].type) {
    return invalid(k, "A is " + dtype_name(static_cast<int32_t>(sh[1].type)) + " but B is " +
                          dtype_name(static_cast<int32_t>(sh[2].type)) + "; they must match");
  }
  const RowsFn rows = rows_for(sh[1].type);
  if (!rows) {
    return invalid(k, "A and B are " + dtype_name(static_cast<int32_t>(sh[1].type)) +
                          "; expected float32, float16, bfloat16 or int8");
  }
  const Shape& xd = sh[0];
  const Shape& ad = sh[1];
  const Shape& bd = sh[2];
  const Shape& sd = sh[3];
  const Shape& rd = sh[4];
  if (xd.rank < 2) return invalid(k, "x has shape " + dims_text(xd) + "; expected [batch, ..., in]");
  if (ad.rank != 3 || bd.rank != 3 || ad.dims[0] != bd.dims[0] || ad.dims[2] != bd.dims[1] || ad.dims[1] != xd.back()) {
    return invalid(k, "A " + dims_text(ad) + " and B " + dims_text(bd) +
                          " do not stack [S, in, R] / [S, R, out] for x " + dims_text(xd));
  }
  if (sd.rank != 1 || (sd.dims[0] != 1 && sd.dims[0] != xd.dims[0])) {
    return invalid(k,
                   "lora_slot has shape " + dims_text(sd) + "; expected [" + std::to_string(xd.dims[0]) + "] or [1]");
  }
  if (rd.rank != 2 || k.pair < 0 || k.pair >= rd.dims[0]) {
    return invalid(
        k, "lora_ranks has shape " + dims_text(rd) + "; expected [P, S] with P > pair " + std::to_string(k.pair));
  }
  // y is base's shape: x's with B's output size, or wider when the op adds to columns [column_offset,
  // column_offset + out) of a packed output (prepare-batching's packed q/k/v).
  Shape yd = xd;
  yd.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  yd.dims[yd.rank - 1] = bd.dims[2];
  if (v[kBaseInput]) {
    const Shape& based = sh[kBaseInput];
    Shape want = yd;
    if (k.packed && based.rank == yd.rank) want.dims[want.rank - 1] = based.back();
    if (!(based == want) || based.back() < k.column_offset + bd.dims[2]) {
      return invalid(k, "base is " + dtype_name(static_cast<int32_t>(based.type)) + " " + dims_text(based) +
                            "; expected float32 " + dims_text(yd) + " (x's shape with B's output size" +
                            (k.packed ? ", at least " + std::to_string(k.column_offset + bd.dims[2]) +
                                            " wide for column_offset " + std::to_string(k.column_offset) + ")"
                                      : ")"));
    }
    yd = based;
  } else if (k.packed) {
    return invalid(k, "column_offset " + std::to_string(k.column_offset) + " needs the base input");
  }
  Job j{};
  j.rows = rows;
  const bool scaled = sh[1].type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  j.esize = dtype_size(static_cast<int32_t>(sh[1].type));  // ONNX and MLORA_DTYPE numbers agree
  j.in = ad.dims[1];
  j.R = ad.dims[2];
  j.out = bd.dims[2];
  j.width = yd.back();
  j.column = k.column_offset;
  j.S = ad.dims[0];
  j.a_blocks = (j.in + kQBlock - 1) / kQBlock;
  j.b_blocks = (j.R + kQBlock - 1) / kQBlock;
  if (scaled) {
    // int8 slots need both scale tensors, float32, shaped [S, ceil(in/32), R] and [S, ceil(R/32), out].
    Shape want[2];
    want[0].type = want[1].type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    want[0].rank = want[1].rank = 3;
    const int64_t w0[3] = {j.S, j.a_blocks, j.R}, w1[3] = {j.S, j.b_blocks, j.out};
    std::copy(w0, w0 + 3, want[0].dims);
    std::copy(w1, w1 + 3, want[1].dims);
    for (size_t i = kScalesInput; i < kScalesInput + 2; ++i) {
      const Shape& w = want[i - kScalesInput];
      if (!v[i]) return invalid(k, std::string("A and B are int8 but input ") + kNames[i] + " is missing");
      if (!(sh[i] == w)) {
        return invalid(k, std::string(kNames[i]) + " is " + dtype_name(static_cast<int32_t>(sh[i].type)) + " " +
                              dims_text(sh[i]) + "; expected float32 " + dims_text(w) + " for A " + dims_text(ad) +
                              " and B " + dims_text(bd) + " (one scale per block of " + std::to_string(kQBlock) +
                              " rows)");
      }
    }
  }
  j.tokens = 1;
  for (size_t i = 1; i + 1 < xd.rank; ++i) j.tokens *= xd.dims[i];
  const int64_t batch = xd.dims[0];
  OrtValue* yv = nullptr;
  MLORA_ORT_TRY(api.KernelContext_GetOutput(ctx, 0, yd.dims, yd.rank, &yv));
  void* p = nullptr;
  MLORA_ORT_TRY(api.GetTensorMutableData(yv, &p));
  j.y = static_cast<float*>(p);
  const void* in_data[kInputs] = {};
  for (size_t i = 0; i < kInputs; ++i) {
    if (!v[i] || (i >= kScalesInput && !scaled)) continue;
    MLORA_ORT_TRY(api.GetTensorMutableData(const_cast<OrtValue*>(v[i]), &p));
    in_data[i] = p;
  }
  j.x = static_cast<const float*>(in_data[0]);
  j.a = static_cast<const uint8_t*>(in_data[1]);
  j.b = static_cast<const uint8_t*>(in_data[2]);
  j.slot = static_cast<const int64_t*>(in_data[3]);
  j.slot_count = static_cast<size_t>(sd.dims[0]);
  j.ranks = static_cast<const int64_t*>(in_data[4]) + k.pair * rd.dims[1];
  j.base = static_cast<const float*>(in_data[kBaseInput]);
  j.sa = static_cast<const float*>(in_data[kScalesInput]);
  j.sb = static_cast<const float*>(in_data[kScalesInput + 1]);
  int64_t rank_sum = 0;  // over the rows: the work there is
  for (size_t i = 0; i < j.slot_count; ++i) {
    const int64_t s = j.slot[i];
    if (s < 0 || s >= rd.dims[1] || (s >= j.S && j.ranks[s] != 0)) {
      return invalid(k, "row " + std::to_string(i) + " has slot " + std::to_string(s) + "; lora_ranks has " +
                            std::to_string(rd.dims[1]) + " slots and A/B " + std::to_string(j.S));
    }
    if (j.ranks[s] < 0 || j.ranks[s] > j.R) {
      return invalid(k, "slot " + std::to_string(s) + " has rank " + std::to_string(j.ranks[s]) +
                            "; A/B hold ranks up to " + std::to_string(j.R));
    }
    rank_sum += j.ranks[s];
  }
  if (j.slot_count == 1) rank_sum *= batch;
  if (batch == 0 || j.tokens == 0 || j.out == 0) return nullptr;
  const size_t y_bytes = static_cast<size_t>(batch * j.tokens * j.width) * sizeof(float);
  if (rank_sum == 0) {  // no row has an adapter here: y is the base output (or zero)
    if (!j.base) {
      std::memset(j.y, 0, y_bytes);
    } else if (j.base != j.y) {
      std::memcpy(j.y, j.base, y_bytes);
    }
    return nullptr;
  }
  j.blocks_per_row = (j.tokens + Job::kBlock - 1) / Job::kBlock;
  const size_t items = static_cast<size_t>(batch * j.blocks_per_row);
  // Tasks of at least ~64k multiply-adds, counted at the rows' own ranks: a decode step's rows are too small
  // to be worth a task each, and a pool dispatch costs more than a small pair's whole work.
  const int64_t work = std::min(j.tokens, Job::kBlock) * j.blocks_per_row * (j.in + j.out) * rank_sum;
  const size_t batches = static_cast<size_t>(std::clamp<int64_t>(work / 65536, 1, static_cast<int64_t>(items)));
  if (batches == 1) {
    for (size_t i = 0; i < items; ++i) run_item(&j, i);
    return nullptr;
  }
  return api.KernelContext_ParallelFor(ctx, run_item, items, batches, &j);
}

// ---- the OrtCustomOp ----------------------------------------------------------------------------------

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  auto* k = new (std::nothrow) Kernel();
  if (!k) return api->CreateStatus(ORT_FAIL, "LoraSlotMatMul: out of memory");
  k->api = api;
  if (OrtStatus* st = api->KernelInfoGetAttribute_int64(info, "pair", &k->pair)) {
    delete k;
    return st;
  }
  // Optional: only nodes over a packed q/k/v output have it.
  if (OrtStatus* st = api->KernelInfoGetAttribute_int64(info, "column_offset", &k->column_offset)) {
    api->ReleaseStatus(st);
    k->column_offset = 0;
  } else {
    k->packed = true;
  }
  if (k->column_offset < 0) {
    delete k;
    return api->CreateStatus(ORT_INVALID_ARGUMENT, "LoraSlotMatMul: column_offset must not be negative");
  }
  size_t size = 0;
  if (!api->KernelInfo_GetNodeName(info, nullptr, &size) && size > 0) {
    k->node.assign(size, '\0');
    if (api->KernelInfo_GetNodeName(info, k->node.data(), &size)) k->node.clear();
    if (!k->node.empty() && k->node.back() == '\0') k->node.pop_back();
  }
  *out = k;
  return nullptr;
}

OrtStatus* ORT_API_CALL compute_kernel(void* kernel, OrtKernelContext* ctx) {
  auto& k = *static_cast<Kernel*>(kernel);
  try {
    return compute(k, ctx);
  } catch (const std::exception& e) {  // bad_alloc from a message or a vector: never into ORT
    return k.api->CreateStatus(ORT_FAIL, e.what());
  }
}

void ORT_API_CALL destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }

const char* ORT_API_CALL op_name(const OrtCustomOp*) { return kLoraSlotMatMulOp; }
const char* ORT_API_CALL op_provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
// A and B (inputs 1, 2) are float32, float16, bfloat16 or int8 (the slot dtype prepare-batching declared):
// UNDEFINED lets ONNX Runtime accept any tensor type there, and compute() checks it. Inputs 5 (base), 6 and 7
// (int8 slots' scales) are float32 and optional.
ONNXTensorElementDataType ORT_API_CALL input_type(const OrtCustomOp*, size_t i) {
  if (i == 0 || i >= kBaseInput) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  return i < 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
}
size_t ORT_API_CALL input_count(const OrtCustomOp*) { return kInputs; }
ONNXTensorElementDataType ORT_API_CALL output_type(const OrtCustomOp*, size_t) {
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t ORT_API_CALL output_count(const OrtCustomOp*) { return 1; }
OrtCustomOpInputOutputCharacteristic ORT_API_CALL input_kind(const OrtCustomOp*, size_t i) {
  return i >= kBaseInput ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}
OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
// y has base's type and shape (with symbolic dims): ONNX Runtime's memory planner reuses base's buffer for y
// (may_inplace below) only when it knows the two are the same size. Without base, or when base has an unnamed
// unknown dim, y's shape is left unknown (and the op runs with a copy of base). The info
// ShapeInferContext_GetInputTypeShape returns belongs to the context.
OrtStatus* ORT_API_CALL infer_shape(const OrtCustomOp*, OrtShapeInferContext* ctx) {
  const OrtApi& api = ort();
  size_t count = 0;
  MLORA_ORT_TRY(api.ShapeInferContext_GetInputCount(ctx, &count));
  if (count <= kBaseInput) return nullptr;
  OrtTensorTypeAndShapeInfo* base = nullptr;
  MLORA_ORT_TRY(api.ShapeInferContext_GetInputTypeShape(ctx, kBaseInput, &base));
  if (!base) return nullptr;
  // Only a shape whose every dim has a value or a name: an unnamed unknown dim would replace the names
  // downstream nodes and the graph outputs had (and could not prove the sizes equal anyway).
  size_t n = 0;
  MLORA_ORT_TRY(api.GetDimensionsCount(base, &n));
  if (n == 0 || n > kMaxDims) return nullptr;
  int64_t dims[kMaxDims] = {};
  const char* names[kMaxDims] = {};
  MLORA_ORT_TRY(api.GetDimensions(base, dims, n));
  MLORA_ORT_TRY(api.GetSymbolicDimensions(base, names, n));
  for (size_t i = 0; i < n; ++i) {
    if (dims[i] < 0 && (!names[i] || !*names[i])) return nullptr;
  }
  return api.ShapeInferContext_SetOutputTypeShape(ctx, 0, base);
}
// y may take base's buffer (ONNX Runtime decides: only where base has no later reader): the LoRA term is then
// added in place and rows without an adapter cost nothing. The arrays are malloc'd: ONNX Runtime hands them back.
size_t ORT_API_CALL may_inplace(int** input_index, int** output_index) {
  *input_index = static_cast<int*>(std::malloc(sizeof(int)));
  *output_index = static_cast<int*>(std::malloc(sizeof(int)));
  if (!*input_index || !*output_index) {
    std::free(*input_index);
    std::free(*output_index);
    *input_index = *output_index = nullptr;
    return 0;
  }
  **input_index = static_cast<int>(kBaseInput);
  **output_index = 0;
  return 1;
}
void ORT_API_CALL release_inplace(int* input_index, int* output_index) {
  std::free(input_index);
  std::free(output_index);
}
OrtMemType ORT_API_CALL input_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL one(const OrtCustomOp*) { return 1; }
int ORT_API_CALL zero(const OrtCustomOp*) { return 0; }
int ORT_API_CALL start_version(const OrtCustomOp*) { return 1; }
int ORT_API_CALL end_version(const OrtCustomOp*) { return 1; }

OrtCustomOp make_op() {
  OrtCustomOp op;
  std::memset(&op, 0, sizeof(op));
  op.version = ORT_API_VERSION;  // the header we build with; newer runtimes accept older versions
  op.GetName = op_name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = input_type;
  op.GetInputTypeCount = input_count;
  op.GetOutputType = output_type;
  op.GetOutputTypeCount = output_count;
  op.GetInputCharacteristic = input_kind;
  op.GetOutputCharacteristic = required;
  op.GetInputMemoryType = input_memory;
  op.GetVariadicInputMinArity = one;
  op.GetVariadicInputHomogeneity = zero;
  op.GetVariadicOutputMinArity = one;
  op.GetVariadicOutputHomogeneity = zero;
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = compute_kernel;
  op.KernelDestroy = destroy_kernel;
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  op.InferOutputShapeFn = infer_shape;
  op.GetMayInplace = may_inplace;
  op.ReleaseMayInplace = release_inplace;
  return op;
}

}  // namespace

void add_lora_op_domain(OrtSessionOptions* options) {
  static const OrtCustomOp op = make_op();
  static std::once_flag once;
  static OrtCustomOpDomain* domain = nullptr;
  static std::string error;
  std::call_once(once, [] {
    const OrtApi& api = ort();
    OrtCustomOpDomain* d = nullptr;
    if (OrtStatus* st = api.CreateCustomOpDomain(kLoraOpDomain, &d)) {
      error = api.GetErrorMessage(st);
      api.ReleaseStatus(st);
      return;
    }
    if (OrtStatus* st = api.CustomOpDomain_Add(d, &op)) {
      error = api.GetErrorMessage(st);
      api.ReleaseStatus(st);
      api.ReleaseCustomOpDomain(d);
      return;
    }
    domain = d;
  });
  if (!domain)
    fail(MLORA_STATUS_RUNTIME, std::string("ONNX Runtime refused the ") + kLoraOpDomain + " op domain: " + error);
  ort_check(ort().AddCustomOpDomain(options, domain), std::string("adding the ") + kLoraOpDomain + " op domain");
}

bool lora_slot_rows(int32_t dtype, const float* x, const void* a, const void* b, float* y, int64_t tokens, int64_t in,
                    int64_t rank, int64_t out, bool add, const float* a_scales, const float* b_scales) {
  const RowsFn rows = rows_for(static_cast<ONNXTensorElementDataType>(dtype));
  const bool scaled = dtype == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
  if (!rows || rank <= 0 || (scaled && (!a_scales || !b_scales))) return false;
  rows(x, a, b, scaled ? a_scales : nullptr, scaled ? b_scales : nullptr, y, tokens, in, rank, out, out, add);
  return true;
}

}  // namespace mlora
