// Which overridable initializers of a model are LoRA inputs (a 2-D input with an empty default along its
// rank axis, or its stacked form [S, d0, d1] in a model prepared for adapter-aware batching), and the
// fingerprint of the LoRA input signature that adapters record as model_version.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/model.h"
#include "model/onnx_scan.h"

namespace mlora {

// Declared type of one session input/output/overridable initializer.
struct Declared {
  int32_t dtype = 0;  // ONNX number (also for types multilora cannot feed); 0 = not a tensor
  std::vector<int64_t> shape;
  std::vector<std::string> symbols;  // per dim, "" if none
};

// Decides whether the overridable initializer `name` (declared as `raw`) is a LoRA input and describes it
// into `out`. The file scan gives its default's dims.
bool describe_lora(const std::string& name, const Declared& raw, const ModelScan& scan, LoraInput& out);

// Quantized LoRA pairs: MatMulNBits(MatMulNBits(x, A_q, A_scales[, A_zp]), B_q, B_scales[, B_zp]) where the
// first node's output feeds only the second and every A_q/B_q is an overridable initializer (a graph input
// with a default). Returns each such input's description without dtype and shape (quantized_shape fills them).
std::unordered_map<std::string, LoraInput> find_quantized_lora(const ModelScan& scan);
// Fills in.dtype and in.quant.shape (the exact shape a parameter must have) from the declared dtype and the
// rank of the input's default. False when the input cannot be a MatMulNBits input of that dtype.
bool quantized_shape(LoraInput& in, int32_t dtype, size_t default_rank);

// The model's LoRA signature fingerprint (recipe in lora_inputs.cpp; Python tools recompute it), always in
// [2^30, 2^31) (bit 30 set: kFingerprintBit in model.h).
int32_t compute_fingerprint(const std::vector<LoraInput>& loras);

}  // namespace mlora
