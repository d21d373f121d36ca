// A loaded base model: one ORT session plus the description of its LoRA inputs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ort/ort.h"

namespace mlora {

struct ModelOptions {
  int32_t log_level = 3;  // ORT severity for this session (MLORA_LOG_*)
  int32_t intra_op_threads = 0;
  std::vector<std::pair<std::string, std::string>> config_entries;
  size_t batch_slots = 17;            // adapter-aware batching: slot table size S, slot 0 = base (2..4097)
  bool allow_external_paths = false;  // genai_config.json may name files outside the model folder
  // Open the companion graph without the LoRA branch that the model's metadata `multilora.base_graph`
  // names (written by `multilora prepare-batching`) and run it whenever no row of a run has an adapter.
  bool base_graph = true;
};

// ModelProto.metadata_props key naming the companion base graph (a path relative to the model's folder).
constexpr const char* kBaseGraphMetadataKey = "multilora.base_graph";

struct IoInfo {
  std::string name;
  int32_t dtype = 0;           // ONNX numbering
  std::vector<int64_t> shape;  // -1 for symbolic dims
};

// What a quantized LoRA input is to its MatMulNBits node (inputs 1, 2, 3).
enum class QuantRole : int32_t { kNone = 0, kWeight, kScales, kZeroPoints };

// A LoRA pair the model quantized itself: the ONNX Runtime GenAI builder at `-p int4` turns the LoRA A and B
// MatMuls into MatMulNBits too, and Olive's extraction makes their weight (`*.weight_Q4`), scales and zero
// points the optional inputs. The node's K and N attributes fix the rank (N of A's node, K of B's), so an
// adapter's tensors must have exactly `shape`; they are fed to ONNX Runtime as they are.
struct QuantInfo {
  QuantRole role = QuantRole::kNone;
  int64_t K = 0, N = 0, bits = 0, block_size = 0;
  int64_t rank = 0;                // N of the pair's A node (= K of its B node)
  std::vector<int64_t> shape;      // the exact shape an adapter's tensor must have
  std::string node;                // the MatMulNBits node's name (messages)
  std::vector<std::string> group;  // the node's LoRA inputs (weight, scales[, zero points]): fed together
};

// A float LoRA input of a model prepared for adapter-aware batching that replaced a quantized pair half
// (prepare_batching.py records them in the metadata key `multilora.dequantize`): adapters that hold the
// quantized tensors are dequantized into it (float32) when they are loaded.
struct DequantTarget {
  std::string target;                       // the float LoRA input ([in, r] for A, [r, out] for B)
  std::string weight, scales, zero_points;  // the quantized parameter names (zero_points "" when none)
  std::string partner_weight;               // B: the pair's A weight (its dim 0 is the rank = B's K); A: ""
  int64_t bits = 4, block_size = 32;
};

// A LoRA input: 2-D, one axis is the rank axis (default size 0), the other fixed (in or out features).
// Quantized inputs (quant.role != kNone) describe the pair half's logical float matrix [K, N] instead: dim0 =
// K, dim1 = N, the rank axis as for A/B, and the rank dim is the model's fixed rank (not 0).
struct LoraInput {
  std::string name;
  int32_t dtype = 0;
  int64_t dim0 = 0, dim1 = 0;  // declared dims; the rank axis's dim is 0
  int32_t rank_axis = 1;       // 1 for A [in, r], 0 for B [r, out]
  // The symbolic name of the rank dim ("" if none). LoRA inputs sharing one name must be fed with one
  // rank in a run: ONNX Runtime's memory planner assumes equal dim_params mean equal sizes.
  std::string rank_symbol;
  // Adapter-aware batching (`multilora prepare-batching`): the input is declared stacked, [S, dim0, dim1]
  // with the slot axis 0, and the graph gathers each row's slot with the int64 input `lora_slot`. dim0,
  // dim1 and rank_axis still describe one slot, i.e. what an adapter's parameter looks like.
  bool stacked = false;
  // Fused batching kernel (see kernels/lora_slot_matmul.h): for A inputs, the row of `lora_ranks` that holds
  // the pair's rank per slot (the A input names sorted by byte value, index in that list); -1 otherwise.
  int32_t pair = -1;
  QuantInfo quant;
  // int8 slots of the fused kernel (`prepare-batching --lora-dtype int8`): the float32 input the runtime fills
  // with this input's block scales (metadata `multilora.slot_scales`); "" otherwise. Not a LoRA input itself:
  // adapters do not hold it. A: [S, ceil(in/32), R]; B: [S, ceil(R/32), out] (kInt8SlotBlock rows per scale).
  std::string scales;
  bool quantized() const noexcept { return quant.role != QuantRole::kNone; }
  int64_t fixed_dim() const noexcept { return rank_axis == 0 ? dim1 : dim0; }
};

// Name of the int64 [batch] input of a model prepared for adapter-aware batching.
constexpr const char* kLoraSlotInput = "lora_slot";
// ModelProto metadata key of a prepared model naming the float LoRA inputs that replaced quantized ones.
constexpr const char* kDequantMetadataKey = "multilora.dequantize";
// ModelProto metadata key of a model prepared with int8 slots: a JSON object {LoRA input: its scales input}.
constexpr const char* kSlotScalesMetadataKey = "multilora.slot_scales";
// int8 slots: rows along K (A's input rows, B's rank rows) per float32 scale.
constexpr int64_t kInt8SlotBlock = 32;
// Name of the int64 [P, S] input of a model prepared with the fused kernel: each LoRA pair's rank per slot.
constexpr const char* kLoraRanksInput = "lora_ranks";

// How a model prepared for adapter-aware batching applies each row's slot.
enum class BatchKernel {
  kNone,    // not prepared
  kGather,  // Gather(stack, lora_slot) + batched MatMul: slots zero-padded to a common rank R
  kFused,   // com.multilora LoraSlotMatMul: slots packed at their own rank, ranks fed in lora_ranks
};

struct GenaiConfig;  // gen/genai_config.h: attached by the generation layer, opaque here

// What Model::open loads. A plain .onnx file needs only the paths; gen/model_folder.h fills the rest for a
// GenAI model folder (the model layer does not read genai_config.json).
struct ModelSource {
  std::string path;                                          // as the user gave it (messages, Model::path())
  std::string onnx_path;                                     // the .onnx file to load
  std::shared_ptr<const GenaiConfig> genai;                  // the folder's parsed genai_config.json
  std::function<void(OrtSessionOptions*)> session_defaults;  // applied before the caller's options
};

// Throws INVALID_ARGUMENT naming the option out of range (or an empty path).
void check_model_options(const std::string& path, const ModelOptions& options);

// Bit 30: set in every LoRA signature fingerprint (and so in the model_version of adapters multilora writes
// for a model); model_version values without it are a producer's own numbers (ONNX Runtime's format).
constexpr int32_t kFingerprintBit = 0x40000000;
inline bool is_fingerprint(int32_t model_version) noexcept {
  return model_version > 0 && (model_version & kFingerprintBit) != 0;
}

class Model {
 public:
  // Opens source.onnx_path (a GenAI folder is resolved by open_model in gen/model_folder.h). Throws
  // INVALID_ARGUMENT, NOT_FOUND, IO, FORMAT, RUNTIME with the path in the message.
  static std::shared_ptr<const Model> open(const ModelSource& source, const ModelOptions& options);

  const std::string& path() const noexcept;            // as given
  const std::string& onnx_path() const noexcept;       // the .onnx file loaded
  const std::vector<IoInfo>& inputs() const noexcept;  // regular inputs (LoRA inputs excluded)
  const std::vector<IoInfo>& outputs() const noexcept;
  const std::vector<LoraInput>& lora_inputs() const noexcept;  // model order
  const LoraInput* find_lora(std::string_view name) const noexcept;
  // Same, for a name whose name_hash (util/name_hash.h) the caller has: an adapter's parameters carry theirs.
  const LoraInput* find_lora(std::string_view name, uint64_t hash) const noexcept;
  const IoInfo* find_input(const std::string& name) const noexcept;
  // Stable 32-bit fingerprint of the LoRA input signature (names, dtypes, fixed dims), always in
  // [kFingerprintBit, 2^31) (see is_fingerprint). A model prepared with the fused kernel keeps the signature
  // of the float32 model it was prepared from, whatever slot dtype (--lora-dtype) it declares.
  int32_t lora_fingerprint() const noexcept;
  // The ONNX file's ModelProto.model_version (0 when the model declares none).
  int64_t declared_version() const noexcept;
  // True when the model was prepared for adapter-aware batching: it has the int64 input `lora_slot` and
  // every LoRA input is stacked (see LoraInput::stacked).
  bool batching() const noexcept;
  BatchKernel batch_kernel() const noexcept;
  // Whether an adapter parameter of `dtype` may feed LoRA input `in`: its own dtype always (ONNX Runtime's
  // rule); on a model prepared with the fused kernel also any other of float32, float16, bfloat16 (the
  // kernel's slot dtypes), converted to the input's dtype when a set is built (run/active_set.h). int8 slots
  // (LoraInput::scales) take float32, float16 and bfloat16 only, quantized when a set is built.
  bool accepts_lora_dtype(const LoraInput& in, int32_t dtype) const noexcept;
  // Fused kernel: number of LoRA pairs (rows of lora_ranks); 0 otherwise.
  int64_t lora_pair_count() const noexcept;
  // Slot-table size for adapter-aware batching (ModelOptions::batch_slots); 0 when not prepared.
  size_t batch_slots() const noexcept;
  // Adapter-aware batching: throws SHAPE_MISMATCH naming both sizes when a fed regular input whose
  // declared axis 0 is the batch dim has another size than `batch`.
  void check_batch(const std::vector<std::string>& input_names, const std::vector<const OrtValue*>& inputs,
                   int64_t batch) const;
  // nullptr when the model is a plain .onnx file.
  const GenaiConfig* genai_config() const noexcept;
  // True when some LoRA input is quantized (QuantInfo): adapters must match its fixed rank, one per run.
  bool quantized_lora() const noexcept;
  // Prepared models only: the float LoRA inputs quantized adapters are dequantized into (metadata).
  const std::vector<DequantTarget>& dequant_targets() const noexcept;

  // Runs the session. `feeds` are regular inputs (validated: known name, not a LoRA input, no
  // duplicates, dtype, rank and fixed dims) — the caller appends LoRA feeds in `lora_names/values`
  // (already validated). Empty `output_names` = all outputs. Throws NOT_FOUND, INVALID_ARGUMENT,
  // TYPE_MISMATCH, SHAPE_MISMATCH, RUNTIME.
  std::vector<OrtValuePtr> run(const std::vector<std::string>& input_names, const std::vector<const OrtValue*>& inputs,
                               const std::vector<const char*>& lora_names,
                               const std::vector<const OrtValue*>& lora_values,
                               const std::vector<std::string>& output_names) const;

  // The LoRA graph's session.
  OrtSession* session() const noexcept;
  // The session for one run, counted in session_runs(): the base graph's when `base_only` (no LoRA feeds:
  // every row on the base model) and the model has one, else the LoRA graph's. Outputs are equal either way.
  OrtSession* session_for_run(bool base_only) const noexcept;
  // The companion base graph's path ("" when none is open).
  const std::string& base_graph_path() const noexcept;
  // Runs so far on each session (session_for_run calls).
  void session_runs(uint64_t* lora_runs, uint64_t* base_runs) const noexcept;
  ~Model();

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlora
