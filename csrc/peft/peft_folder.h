// PEFT LoRA folders (adapter_config.json + adapter_model.safetensors) turned into ordinary adapters for one
// model (docs/design.md §4): tensors are resolved to the model's LoRA inputs by layer index + module path,
// transposed (PEFT: A [r, in], B [out, r]; ours: A [in, r], B [r, out]), the LoRA scale is folded into B
// (lora_alpha / r, lora_alpha / sqrt(r) with use_rslora, per module through rank_pattern / alpha_pattern),
// and the values are converted to the model's LoRA input dtype (float32/float16/bfloat16/float64 in,
// computed in double). The result owns its bytes (counted in bytes_copied) and records the model's version.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapter/adapter.h"
#include "model/model.h"

namespace mlora {
namespace peft {

// Whether `path` is a directory (PEFT folders are the only directories adapters load from).
bool is_directory(const std::string& path);

// Loads `dir` for `model`. Throws IO (a directory without adapter_config.json), NOT_FOUND (no
// adapter_model.safetensors, or tensors that match no LoRA input of the model — every one is named),
// FORMAT (bad JSON/safetensors, unsupported features: DoRA, modules_to_save, embedding LoRA, LoRA bias,
// ... — every one is named), TYPE_MISMATCH (a dtype that cannot be converted), SHAPE_MISMATCH (features
// that do not fit the model).
std::shared_ptr<const Adapter> load_folder(const std::string& dir, const Model& model);

}  // namespace peft
}  // namespace mlora
