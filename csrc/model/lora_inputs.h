// Which overridable initializers of a model are LoRA inputs (a 2-D input with an empty default along its
// rank axis, or its stacked form [S, d0, d1] in a model prepared for adapter-aware batching), and the
// fingerprint of the LoRA input signature that adapters record as model_version.
#pragma once

#include <cstdint>
#include <string>
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

// The model's LoRA signature fingerprint (recipe in lora_inputs.cpp; Python tools recompute it), never 0.
int32_t compute_fingerprint(const std::vector<LoraInput>& loras);

}  // namespace mlora
