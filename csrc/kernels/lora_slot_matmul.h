// The fused CPU kernel of adapter-aware batching (docs/design.md §6): an ONNX Runtime custom op, domain
// "com.multilora", type "LoraSlotMatMul" (version 1), that `multilora prepare-batching --kernel fused`
// puts in place of each LoRA pair's Gather + batched MatMul pair. The CPU counterpart of Punica's SGMV.
//
//   inputs   x           float [batch, ..., in]   the activation the pair's first MatMul read
//            A           T [S, in, R]             slot s holds its A as [in, r] *packed* (stride r) in
//                                                 the first in*r elements of the slot
//            B           T [S, R, out]            slot s holds its B as [r, out] in the first r rows
//                        T = float, float16, bfloat16 or int8 (the slot dtype, `--lora-dtype`; A and B alike),
//                        widened to float in registers, float accumulation
//            lora_slot   int64 [batch] or [1]     each row's slot ([1]: one slot for every row)
//            lora_ranks  int64 [P, S']            r = lora_ranks[pair, slot] (0 = no LoRA for that slot)
//            base        float [batch, ..., out]  optional: the base MatMul's output x·W, to which the LoRA term
//                                                 is added (prepare-batching folds the pair's Add into the op)
//            A_scales    float [S, ceil(in/32), R] int8 slots only (required then): slot s holds A's scales as
//                                                 [ceil(in/32), r] packed (stride r): one per block of 32 input
//                                                 rows per rank column; A = int8 · scale
//            B_scales    float [S, ceil(R/32), out] int8 slots only: slot s holds [ceil(r/32), out], one per
//                                                 block of 32 rank rows per output column
//   attribute pair       int                      this pair's row of lora_ranks
//   attribute column_offset int (optional)        base is a packed output [batch, ..., W] (prepare-batching packs
//                                                 the q/k/v MatMulNBits of a GroupQueryAttention into one) and
//                                                 the LoRA term goes to its columns [column_offset,
//                                                 column_offset + out), W >= column_offset + out
//   output   y           float [batch, ..., out]  y[b] = base[b] + x[b] · A_s[:, :r] · B_s[:r, :],  s = slot of
//                                                 row b (without base: the LoRA term alone); with column_offset
//                                                 base's shape, the other columns base's
//
// y may reuse base's buffer (the op declares that ONNX Runtime may run it in place): a row without an adapter
// then costs nothing, and a step none of whose rows has an adapter for this pair does no work at all.
//
// Each row reads only its slot's r columns' worth of weights, once: no gather copy, no zero padding read.
// Work is split over (row, token block) with ONNX Runtime's intra-op thread pool, sized by the rows' own ranks.
#pragma once

#include <onnxruntime_c_api.h>

#include <cstdint>

namespace mlora {

constexpr const char* kLoraOpDomain = "com.multilora";
constexpr const char* kLoraSlotMatMulOp = "LoraSlotMatMul";

// The op's arithmetic for one row (no ONNX Runtime involved; for benchmarks/kernel_rows.cpp): y[t, :] (+)=
// (x[t, :] · A) · B for `tokens` tokens, A packed [in, rank] and B [rank, out] of element type `dtype`
// (MLORA_DTYPE_FLOAT32/FLOAT16/BFLOAT16, or INT8 with its scales: a_scales [ceil(in/32), rank], b_scales
// [ceil(rank/32), out]), y overwritten unless `add`. Returns false (nothing done) for another dtype, rank <= 0,
// or int8 without both scales.
bool lora_slot_rows(int32_t dtype, const float* x, const void* a, const void* b, float* y, int64_t tokens, int64_t in,
                    int64_t rank, int64_t out, bool add, const float* a_scales = nullptr,
                    const float* b_scales = nullptr);

// Adds the "com.multilora" domain (created once per process, never released: sessions may outlive any
// owner) to session options. Throws RUNTIME when ONNX Runtime refuses it.
void add_lora_op_domain(OrtSessionOptions* options);

}  // namespace mlora
