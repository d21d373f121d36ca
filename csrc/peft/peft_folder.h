// PEFT LoRA folders (adapter_config.json + adapter_model.safetensors) turned into ordinary adapters for one
// model (docs/design.md §4): tensors are resolved to the model's LoRA inputs by layer index + module path,
// transposed (PEFT: A [r, in], B [out, r]; ours: A [in, r], B [r, out]), the LoRA scale is folded into B
// (lora_alpha / r, lora_alpha / sqrt(r) with use_rslora, per module through rank_pattern / alpha_pattern),
// and the values are converted to the model's LoRA input dtype (float32/float16/bfloat16/float64 in,
// computed in double). The result owns its bytes (counted in bytes_copied) and records the model's version.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapter/adapter.h"
#include "model/model.h"

namespace mlora {
namespace peft {

// Resolves parameter names spelled by other tools to a model's LoRA inputs — the one resolver of PEFT folders
// and of .onnx_adapter files whose names are not the model's (olive convert-adapters writes
// "model.layers.0.self_attn.q_proj.lora_A.weight" where a builder model says
// "model.layers.0.attn.q_proj.lora_A.MatMul.weight"). A name of the form "<module>.lora_A[.<x>].weight"
// (optionally under PEFT's "base_model.model.") is matched by layer index + module path, with self_attn /
// attention / self_attention == attn and feed_forward == mlp; a model whose names carry no block is matched
// by the leaf module alone. For files (resolve_names) the tokens before the layer index must also equal the
// model's ("model.layers"), so only the spellings PEFT and Olive differ in are forgiven.
class LoraNameResolver {
 public:
  explicit LoraNameResolver(const Model& model);
  struct Match {
    bool weight = false;               // the name has the "<module>.lora_A[.<x>].weight" form
    std::string module;                // "<module>" without the PEFT prefix
    std::string prefix;                // module tokens before the layer index ("model.layers")
    char half = 0;                     // 'A' or 'B'
    const LoraInput* input = nullptr;  // the model input it resolves to (null: none, or ambiguous)
    bool ambiguous = false;            // several model inputs fit
  };
  Match resolve(const std::string& name) const;

 private:
  std::map<std::string, std::vector<const LoraInput*>> by_key_, by_leaf_;
};

// `adapter` with every parameter that is not a LoRA input of `model` but resolves unambiguously renamed to
// the input's name (a view sharing its bytes); `adapter` itself when nothing needs renaming. Names that do not
// resolve are kept as they are (validation then names them). Throws FORMAT when two parameters resolve to the
// same input, naming both.
std::shared_ptr<const Adapter> resolve_names(std::shared_ptr<const Adapter> adapter, const Model& model);

// Loads `dir` for `model`. Throws IO (a directory without adapter_config.json), NOT_FOUND (no
// adapter_model.safetensors, or tensors that match no LoRA input of the model — every one is named),
// FORMAT (bad JSON/safetensors, unsupported features: DoRA, modules_to_save, embedding LoRA, LoRA bias,
// ... — every one is named; tensors of a module that target_modules does not select, or exclude_modules
// excludes, naming the module and the setting: PEFT would not apply them), TYPE_MISMATCH (a dtype that cannot be
// converted), SHAPE_MISMATCH (features that do not fit the model).
std::shared_ptr<const Adapter> load_folder(const std::string& dir, const Model& model);

}  // namespace peft
}  // namespace mlora
