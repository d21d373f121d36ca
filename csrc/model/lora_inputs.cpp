#include "model/lora_inputs.h"

#include <algorithm>

#include "util/dtype.h"

namespace mlora {

// lora_fingerprint recipe (Python tools recompute it; keep them in sync):
//   for every LoRA input, the line  name + "|" + dtype + "|" + fixed_dim + "|" + rank_axis + "\n"
//   (integers in decimal, ONNX dtype numbers, fixed_dim -1 when the declared dim is symbolic);
//   sort the lines by byte value, concatenate them, and hash the UTF-8 bytes with 32-bit FNV-1a
//   (offset basis 2166136261, prime 16777619); the result is hash & 0x7fffffff, or 1 if that is 0.
//   A model without LoRA inputs therefore gets 2166136261 & 0x7fffffff = 18652613.
int32_t compute_fingerprint(const std::vector<LoraInput>& loras) {
  std::vector<std::string> lines;
  for (const LoraInput& l : loras) {
    lines.push_back(l.name + "|" + std::to_string(l.dtype) + "|" + std::to_string(l.fixed_dim()) + "|" +
                    std::to_string(l.rank_axis) + "\n");
  }
  std::sort(lines.begin(), lines.end());
  uint32_t h = 2166136261u;
  for (const std::string& line : lines) {
    for (unsigned char c : line) {
      h ^= c;
      h *= 16777619u;
    }
  }
  h &= 0x7fffffffu;
  return h == 0 ? 1 : static_cast<int32_t>(h);
}

// Decides whether an overridable initializer is a LoRA input and describes it. A LoRA input is declared 2-D
// with its rank axis 0 or symbolic, and its default value (the initializer) is empty along that axis.
// A model prepared for adapter-aware batching declares its LoRA inputs stacked, [S, d0, d1] with a symbolic
// slot axis 0 and a default [1, d0, d1]: they are described by their last two axes (one slot).
bool describe_lora(const std::string& name, const Declared& raw, const ModelScan& scan, LoraInput& out) {
  if (dtype_size(raw.dtype) == 0) return false;  // not a tensor of a dtype we can feed
  const auto init = scan.initializer_dims.find(name);
  Declared d = raw;
  std::vector<int64_t> slot_dims;  // the default's dims without the slot axis
  bool stacked = false;
  if (d.shape.size() == 3 && d.shape[0] < 0) {
    if (init == scan.initializer_dims.end() || init->second.size() != 3 || init->second[0] != 1) return false;
    stacked = true;
    d.shape.erase(d.shape.begin());
    d.symbols.erase(d.symbols.begin());
    slot_dims.assign(init->second.begin() + 1, init->second.end());
  }
  if (d.shape.size() != 2) return false;
  const std::vector<int64_t>* init_dims = stacked ? &slot_dims
                                          : init != scan.initializer_dims.end() && init->second.size() == 2
                                              ? &init->second
                                              : nullptr;
  auto rank_capable = [&](int axis) {
    if (d.shape[axis] > 0) return false;                     // declared fixed and non-zero
    if (init_dims && (*init_dims)[axis] != 0) return false;  // default not empty along it
    return true;
  };
  int axis = -1;
  if (name.find("lora_A") != std::string::npos) {
    axis = 1;
  } else if (name.find("lora_B") != std::string::npos) {
    axis = 0;
  } else if (rank_capable(0) != rank_capable(1)) {
    axis = rank_capable(0) ? 0 : 1;
  } else if (init_dims && ((*init_dims)[0] == 0) != ((*init_dims)[1] == 0)) {
    axis = (*init_dims)[0] == 0 ? 0 : 1;
  }
  if (axis < 0 || !rank_capable(axis)) return false;
  out.name = name;
  out.dtype = d.dtype;
  out.rank_axis = axis;
  const int fixed_axis = 1 - axis;
  int64_t fixed = d.shape[fixed_axis] >= 0 ? d.shape[fixed_axis] : -1;
  if (fixed < 0 && init_dims && (*init_dims)[fixed_axis] > 0) fixed = (*init_dims)[fixed_axis];  // from the default
  out.rank_symbol = d.symbols[axis];
  out.dim0 = axis == 0 ? 0 : fixed;
  out.dim1 = axis == 1 ? 0 : fixed;
  out.stacked = stacked;
  return true;
}

}  // namespace mlora
