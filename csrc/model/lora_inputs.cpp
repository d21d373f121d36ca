#include "model/lora_inputs.h"

#include <algorithm>
#include <unordered_set>

#include "util/dtype.h"

namespace mlora {

// lora_fingerprint recipe (Python tools recompute it; keep them in sync):
//   for every LoRA input, the line  name + "|" + dtype + "|" + fixed_dim + "|" + rank_axis + "\n"
//   (integers in decimal, ONNX dtype numbers, fixed_dim -1 when the declared dim is symbolic);
//   sort the lines by byte value, concatenate them, and hash the UTF-8 bytes with 32-bit FNV-1a
//   (offset basis 2166136261, prime 16777619); the result is (hash & 0x7fffffff) | 0x40000000, so it always
//   lies in [2^30, 2^31): an adapter model_version in that range is read as a fingerprint, a smaller one as
//   its producer's own number (ONNX Runtime's format leaves the field's meaning to the producer).
//   A model without LoRA inputs therefore gets (2166136261 & 0x7fffffff) | 0x40000000 = 1092394437.
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
  return static_cast<int32_t>((h & 0x7fffffffu) | 0x40000000u);
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

std::unordered_map<std::string, LoraInput> find_quantized_lora(const ModelScan& scan) {
  std::unordered_map<std::string, LoraInput> out;
  std::unordered_map<std::string, const NBitsNode*> by_output;
  for (const NBitsNode& n : scan.nbits_nodes) {
    if (!n.outputs.empty()) by_output[n.outputs[0]] = &n;
  }
  const std::unordered_set<std::string> inputs(scan.inputs.begin(), scan.inputs.end());
  auto overridable = [&](const std::string& name) {
    return !name.empty() && scan.initializer_dims.count(name) && inputs.count(name);
  };
  constexpr int64_t kMaxDim = int64_t{1} << 31;  // attributes come from the file: keep products in range
  auto usable = [&](const NBitsNode& n) {
    return n.inputs.size() >= 3 && n.K > 0 && n.N > 0 && n.block_size > 0 && n.K < kMaxDim && n.N < kMaxDim &&
           n.block_size < kMaxDim && (n.bits == 2 || n.bits == 4 || n.bits == 8) && overridable(n.inputs[1]) &&
           scan.consumers.count(n.inputs[1]) && scan.consumers.at(n.inputs[1]) == 1;
  };
  for (const NBitsNode& b : scan.nbits_nodes) {
    if (!usable(b)) continue;
    auto it = by_output.find(b.inputs[0]);
    if (it == by_output.end()) continue;
    const NBitsNode& a = *it->second;
    if (!usable(a) || scan.consumers.count(a.outputs[0]) == 0 || scan.consumers.at(a.outputs[0]) != 1) continue;
    if (a.N != b.K) continue;  // not a low-rank pair
    for (const NBitsNode* n : {&a, &b}) {
      const bool is_a = n == &a;
      std::vector<std::string> group;
      for (size_t k = 1; k < n->inputs.size() && k <= 3; ++k) {
        if (overridable(n->inputs[k])) group.push_back(n->inputs[k]);
      }
      for (size_t k = 1; k < n->inputs.size() && k <= 3; ++k) {
        if (!overridable(n->inputs[k])) continue;
        LoraInput in;
        in.name = n->inputs[k];
        in.rank_axis = is_a ? 1 : 0;
        in.dim0 = n->K;
        in.dim1 = n->N;
        in.quant.role = static_cast<QuantRole>(k);
        in.quant.K = n->K;
        in.quant.N = n->N;
        in.quant.bits = n->bits;
        in.quant.block_size = n->block_size;
        in.quant.rank = a.N;
        in.quant.node = n->name;
        in.quant.group = group;
        out[in.name] = std::move(in);
      }
    }
  }
  return out;
}

bool quantized_shape(LoraInput& in, int32_t dtype, size_t default_rank) {
  QuantInfo& q = in.quant;
  const int64_t blocks = (q.K + q.block_size - 1) / q.block_size;
  const int64_t packed = (blocks * q.bits + 7) / 8;
  in.dtype = dtype;
  switch (q.role) {
    case QuantRole::kWeight:
      if (dtype != MLORA_DTYPE_UINT8 || (q.block_size * q.bits) % 8) return false;
      q.shape = {q.N, blocks, q.block_size * q.bits / 8};
      return true;
    case QuantRole::kScales:
      if (!dtype_is_float(dtype)) return false;
      q.shape = default_rank == 1 ? std::vector<int64_t>{q.N * blocks} : std::vector<int64_t>{q.N, blocks};
      return true;
    case QuantRole::kZeroPoints: {
      const int64_t per_row = dtype == MLORA_DTYPE_UINT8 ? packed : blocks;
      if (dtype != MLORA_DTYPE_UINT8 && !dtype_is_float(dtype)) return false;
      q.shape = default_rank == 1 ? std::vector<int64_t>{q.N * per_row} : std::vector<int64_t>{q.N, per_row};
      return true;
    }
    default:
      return false;
  }
}

}  // namespace mlora
