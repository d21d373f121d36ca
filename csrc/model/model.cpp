#include "model/model.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "io/folder_file.h"
#include "io/mapped_file.h"
#include "kernels/lora_slot_matmul.h"
#include "model/lora_inputs.h"
#include "model/onnx_scan.h"
#include "model/tensor.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/json.h"
#include "util/name_hash.h"
#include "util/utf8.h"

namespace mlora {

namespace {

// ---- helpers -------------------------------------------------------------------------------------------

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string absolute(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

std::string join(const std::vector<std::string>& names) {
  if (names.empty()) return "(none)";
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) s += ", ";
    s += "'" + names[i] + "'";
  }
  return s;
}

// "[batch, 8]": symbolic dims by their name ("?" when unnamed).
std::string declared_shape_str(const std::vector<int64_t>& dims, const std::vector<std::string>& symbols) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    if (dims[i] >= 0) {
      s += std::to_string(dims[i]);
    } else {
      s += i < symbols.size() && !symbols[i].empty() ? symbols[i] : std::string("?");
    }
  }
  return s + "]";
}

// Names from ORT's allocator, copied into std::string and freed.
class OrtName {
 public:
  OrtName() { ort_check(ort().GetAllocatorWithDefaultOptions(&alloc_), "getting ONNX Runtime's allocator"); }
  ~OrtName() {
    if (!p_) return;
    if (OrtStatus* status = ort().AllocatorFree(alloc_, p_)) ort().ReleaseStatus(status);
  }
  OrtName(const OrtName&) = delete;
  OrtName& operator=(const OrtName&) = delete;
  OrtAllocator* allocator() const noexcept { return alloc_; }
  char** out() noexcept { return &p_; }
  std::string str() const { return p_ ? std::string(p_) : std::string(); }

 private:
  OrtAllocator* alloc_ = nullptr;
  char* p_ = nullptr;
};

Declared declared_of(OrtTypeInfo* raw, const std::string& what) {
  OrtTypeInfoPtr type_info(raw);
  const OrtApi& api = ort();
  Declared d;
  ONNXType kind = ONNX_TYPE_UNKNOWN;
  ort_check(api.GetOnnxTypeFromTypeInfo(type_info.get(), &kind), "reading the type of " + what);
  if (kind != ONNX_TYPE_TENSOR) return d;
  const OrtTensorTypeAndShapeInfo* info = nullptr;  // owned by type_info
  ort_check(api.CastTypeInfoToTensorInfo(type_info.get(), &info), "reading the tensor type of " + what);
  if (!info) return d;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ort_check(api.GetTensorElementType(info, &type), "reading the element type of " + what);
  d.dtype = static_cast<int32_t>(type);
  size_t rank = 0;
  ort_check(api.GetDimensionsCount(info, &rank), "reading the rank of " + what);
  d.shape.resize(rank);
  std::vector<const char*> symbols(rank, nullptr);
  if (rank) {
    ort_check(api.GetDimensions(info, d.shape.data(), rank), "reading the shape of " + what);
    ort_check(api.GetSymbolicDimensions(info, symbols.data(), rank), "reading the shape of " + what);
  }
  for (size_t i = 0; i < rank; ++i) {
    d.symbols.push_back(symbols[i] ? symbols[i] : "");
    if (d.shape[i] < 0) d.shape[i] = -1;
  }
  return d;
}

// The environment held for the life of a model (ort_shutdown refuses while any model lives).
struct EnvHold {
  OrtEnv* env;
  EnvHold() : env(ort_env_acquire()) {}
  ~EnvHold() { ort_env_release(); }
  EnvHold(const EnvHold&) = delete;
  EnvHold& operator=(const EnvHold&) = delete;
};

struct PrepackedDeleter {
  void operator()(OrtPrepackedWeightsContainer* c) const noexcept {
    if (c) ort().ReleasePrepackedWeightsContainer(c);
  }
};

}  // namespace

// ---- Model ---------------------------------------------------------------------------------------------

struct Model::Impl {
  EnvHold env;  // first member: released last, after the sessions
  // With a base graph: the weights both graphs reference, mapped once and handed to both sessions as
  // shared initializers, and the container in which ONNX Runtime keeps their pre-packed forms once for
  // both. Declared before the sessions, so released after them.
  std::vector<MappedFile> weight_files;
  std::vector<OrtValuePtr> shared_weights;
  std::unique_ptr<OrtPrepackedWeightsContainer, PrepackedDeleter> prepacked;
  std::string path;
  std::string onnx_path;
  OrtSessionPtr session;
  OrtSessionPtr base_session;  // the companion graph without the LoRA branch (null when none)
  std::string base_path;
  mutable std::atomic<uint64_t> lora_runs{0}, base_runs{0};
  std::vector<IoInfo> inputs;
  std::vector<std::vector<std::string>> input_symbols;  // per regular input, symbolic dim names
  std::vector<bool> input_has_shape;                    // false: declared without a shape (rank unknown)
  std::vector<bool> input_required;                     // false for inputs that have an initializer
  std::vector<IoInfo> outputs;
  std::vector<LoraInput> loras;
  std::unordered_map<std::string, size_t> input_index, output_index, lora_index;
  NameTable lora_table;  // loras by name_hash: what adapter loads look their parameters up in
  std::vector<std::string> input_names, output_names;  // for messages
  int32_t fingerprint = kFingerprintBit;
  int64_t declared_version = 0;  // ModelProto.model_version
  bool batching = false;         // prepared for adapter-aware batching (lora_slot + stacked LoRA inputs)
  bool ranks_input = false;      // has lora_ranks: prepared for the fused kernel
  int64_t ranks_pairs = 0;       // lora_ranks' declared P
  BatchKernel kernel = BatchKernel::kNone;
  int64_t pairs = 0;
  size_t batch_slots = 0;
  bool quantized = false;              // some LoRA inputs are MatMulNBits inputs (QuantInfo)
  std::vector<DequantTarget> dequant;  // prepared models: float inputs that replaced quantized ones
  std::unordered_map<std::string, std::string> slot_scales;  // int8 slots: LoRA input -> its scales input
  std::unordered_set<std::string> scale_inputs;              // the scales inputs (metadata multilora.slot_scales)
  std::shared_ptr<const GenaiConfig> genai;                  // set when the model is a folder with genai_config.json
};

void check_model_options(const std::string& path, const ModelOptions& options) {
  if (path.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "model path is empty");
  if (options.log_level < 0 || options.log_level > 4) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "log level " + std::to_string(options.log_level) + " is outside 0..4");
  }
  if (options.intra_op_threads < 0) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "intra-op threads " + std::to_string(options.intra_op_threads) + " is negative");
  }
  if (options.batch_slots < 2 || options.batch_slots > 4097) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "batch_slots " + std::to_string(options.batch_slots) + " is outside 2..4097 (slot 0 is the base model)");
  }
}

namespace {

// Shared weights of the two graphs: the external initializers both files declare alike (same name, dtype,
// dims, file, offset, length), from files inside the model's folder.
struct SharedWeight {
  const ExternalInitializer* init;
  std::string file;  // resolved path
};

std::vector<SharedWeight> shared_weights_of(const ModelScan& lora, const ModelScan& base, const std::string& dir,
                                            bool allow_external) {
  std::unordered_map<std::string, const ExternalInitializer*> in_base;
  for (const auto& e : base.external_initializers) in_base[e.name] = &e;
  std::vector<SharedWeight> out;
  for (const auto& e : lora.external_initializers) {
    auto it = in_base.find(e.name);
    if (it == in_base.end()) continue;
    const ExternalInitializer& b = *it->second;
    if (b.dtype != e.dtype || b.dims != e.dims || b.location != e.location || b.offset != e.offset ||
        b.length != e.length) {
      continue;
    }
    const size_t elem = dtype_size(e.dtype);
    if (elem == 0 || e.dtype == MLORA_DTYPE_BOOL || e.location.empty() || e.offset % 64 != 0) continue;
    if (!allow_external && (e.location[0] == '/' || e.location.find("..") != std::string::npos)) continue;
    size_t count = 1;
    bool ok = true;
    for (int64_t d : e.dims) {
      if (d < 0 || (d > 0 && count > SIZE_MAX / static_cast<size_t>(d))) ok = false;
      if (ok) count *= static_cast<size_t>(d);
    }
    if (!ok || count == 0 || count > SIZE_MAX / elem) continue;
    if (e.length >= 0 && static_cast<size_t>(e.length) != count * elem) continue;
    out.push_back(SharedWeight{&e, e.location[0] == '/' ? e.location : dir + "/" + e.location});
  }
  return out;
}

// Maps the shared weights' files and wraps each weight in an OrtValue over the mapping (skipping any that
// runs past its file's end); returns (name, value) for AddInitializer.
std::vector<std::pair<std::string, const OrtValue*>> map_shared_weights(Model::Impl& impl,
                                                                        const std::vector<SharedWeight>& weights) {
  std::unordered_map<std::string, size_t> file_index;
  std::vector<std::pair<std::string, const OrtValue*>> out;
  for (const SharedWeight& w : weights) {
    auto it = file_index.find(w.file);
    if (it == file_index.end()) {
      MappedFile mapped;
      try {
        mapped = MappedFile::open(w.file);
      } catch (const Error&) {
        continue;  // ONNX Runtime reports a missing or unreadable data file itself
      }
      it = file_index.emplace(w.file, impl.weight_files.size()).first;
      impl.weight_files.push_back(std::move(mapped));
    }
    const MappedFile& file = impl.weight_files[it->second];
    const ExternalInitializer& e = *w.init;
    const size_t bytes = element_count(e.dims, "initializer '" + e.name + "'") * dtype_size(e.dtype);
    if (static_cast<uint64_t>(e.offset) > file.size() || bytes > file.size() - static_cast<size_t>(e.offset)) {
      continue;
    }
    OrtValue* value = nullptr;
    // ONNX Runtime only reads initializers (pre-packing copies them): the read-only mapping is never written.
    void* data = const_cast<uint8_t*>(file.data()) + e.offset;
    ort_check(ort().CreateTensorWithDataAsOrtValue(ort_cpu_memory(), data, bytes, e.dims.data(), e.dims.size(),
                                                   static_cast<ONNXTensorElementDataType>(e.dtype), &value),
              "wrapping the weight '" + e.name + "'");
    impl.shared_weights.emplace_back(value);
    out.emplace_back(e.name, value);
  }
  return out;
}

// Creates a session for `onnx_path` (rewritten without repeated graph inputs when it has them). `shared`:
// initializers handed to the session (weights shared with the other graph), with impl.prepacked.
OrtSessionPtr open_session(Model::Impl& impl, const std::string& onnx_path, MappedFile& file, const ModelScan& scan,
                           const ModelSource& source, const ModelOptions& options,
                           const std::vector<std::pair<std::string, const OrtValue*>>& shared) {
  const OrtApi& api = ort();
  const std::string kExternalFolderKey = "session.model_external_initializers_file_folder_path";
  bool has_external_folder = false;
  auto make_options = [&] {
    OrtSessionOptions* raw_options = nullptr;
    ort_check(api.CreateSessionOptions(&raw_options), "creating session options");
    OrtSessionOptionsPtr session_options(raw_options);
    // Generation: genai_config.json's session options; the caller's options below take precedence.
    if (source.session_defaults) source.session_defaults(session_options.get());
    ort_check(api.SetSessionLogId(session_options.get(), base_name(onnx_path).c_str()), "setting the session log id");
    ort_check(api.SetSessionLogSeverityLevel(session_options.get(), options.log_level), "setting the log level");
    apply_thread_policy(session_options.get(), options.intra_op_threads);
    add_lora_op_domain(session_options.get());  // com.multilora ops of models prepared with the fused kernel
    has_external_folder = false;
    for (const auto& [key, value] : options.config_entries) {
      ort_check(api.AddSessionConfigEntry(session_options.get(), key.c_str(), value.c_str()),
                "setting session config entry '" + key + "' = '" + value + "'");
      has_external_folder |= key == kExternalFolderKey;
    }
    for (const auto& [name, value] : shared) {
      ort_check(api.AddInitializer(session_options.get(), name.c_str(), value), "sharing the weight '" + name + "'");
    }
    return session_options;
  };
  OrtSessionOptionsPtr session_options = make_options();

  // ORT refuses a graph that declares an input twice ("Duplicate definition-site for (x)"): such a model is
  // rewritten without the repeats and the session is created from the bytes.
  std::string rewritten;
  if (scan.duplicate_inputs) {
    try {
      rewritten = drop_duplicate_inputs(file.data(), file.size());
    } catch (const ProtoError& e) {
      fail(MLORA_STATUS_FORMAT, "'" + onnx_path + "' is not an ONNX model (" + e.what + ")");
    }
  }
  file = MappedFile();  // unmapped: ORT reads the file (or the rewritten copy) itself

  OrtPrepackedWeightsContainer* prepacked = impl.prepacked.get();
  auto create = [&](OrtSessionOptions* so, OrtSession** out) -> OrtStatus* {
    if (!scan.duplicate_inputs) {
      return prepacked
                 ? api.CreateSessionWithPrepackedWeightsContainer(impl.env.env, onnx_path.c_str(), so, prepacked, out)
                 : api.CreateSession(impl.env.env, onnx_path.c_str(), so, out);
    }
    // A session from bytes resolves external data (model.onnx.data) against this folder, not the cwd.
    if (!has_external_folder) {
      OrtStatus* st = api.AddSessionConfigEntry(so, kExternalFolderKey.c_str(), dir_of(absolute(onnx_path)).c_str());
      if (st) return st;
    }
    return prepacked ? api.CreateSessionFromArrayWithPrepackedWeightsContainer(impl.env.env, rewritten.data(),
                                                                               rewritten.size(), so, prepacked, out)
                     : api.CreateSessionFromArray(impl.env.env, rewritten.data(), rewritten.size(), so, out);
  };
  OrtSession* raw_session = nullptr;
  OrtStatus* status = create(session_options.get(), &raw_session);
  // The process's ONNX Runtime environment is one per process: when another user of the same library (e.g.
  // onnxruntime-genai) created it first, it has no global thread pool and sessions need their own.
  if (status && thread_policy_fell_back(status)) {
    api.ReleaseStatus(status);
    session_options = make_options();
    status = create(session_options.get(), &raw_session);
  }
  ort_check(status, "ONNX Runtime cannot load model '" + onnx_path + "'");
  std::string().swap(rewritten);
  return OrtSessionPtr(raw_session);
}

// Reads and scans a model file; throws FORMAT when it is not an ONNX model.
ModelScan scan_file(const std::string& onnx_path, MappedFile& file) {
  file = MappedFile::open(onnx_path);
  ModelScan scan;
  try {
    scan = scan_model(file.data(), file.size());
  } catch (const ProtoError& e) {
    fail(MLORA_STATUS_FORMAT, "'" + onnx_path + "' is not an ONNX model (" + e.what + ")");
  }
  if (!scan.has_graph) fail(MLORA_STATUS_FORMAT, "'" + onnx_path + "' is not an ONNX model (no graph)");
  return scan;
}

// Names, dtypes and shapes of a session's inputs or outputs, for comparing the two graphs.
std::vector<std::string> io_signature(OrtSession* session, bool inputs) {
  const OrtApi& api = ort();
  size_t n = 0;
  ort_check(inputs ? api.SessionGetInputCount(session, &n) : api.SessionGetOutputCount(session, &n), "counting io");
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(inputs ? api.SessionGetInputName(session, i, name.allocator(), name.out())
                     : api.SessionGetOutputName(session, i, name.allocator(), name.out()),
              "reading io names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(inputs ? api.SessionGetInputTypeInfo(session, i, &type_info)
                     : api.SessionGetOutputTypeInfo(session, i, &type_info),
              "reading the type of '" + name.str() + "'");
    const Declared d = declared_of(type_info, "'" + name.str() + "'");
    out.push_back(name.str() + " " + dtype_name(d.dtype) + " " + declared_shape_str(d.shape, d.symbols));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// LoRA inputs among the overridable initializers, in ORT's order (`found` maps a name to its index); also
// notes lora_slot / lora_ranks (adapter-aware batching).
std::vector<LoraInput> find_lora_inputs(Model::Impl& impl, const ModelScan& scan,
                                        std::unordered_map<std::string, size_t>& found) {
  const OrtApi& api = ort();
  OrtSession* session = impl.session.get();
  std::vector<LoraInput> found_order;
  const std::unordered_map<std::string, LoraInput> quantized = find_quantized_lora(scan);

  size_t n = 0;
  ort_check(api.SessionGetOverridableInitializerCount(session, &n), "counting overridable initializers");
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(api.SessionGetOverridableInitializerName(session, i, name.allocator(), name.out()),
              "reading overridable initializer names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(api.SessionGetOverridableInitializerTypeInfo(session, i, &type_info),
              "reading the type of initializer '" + name.str() + "'");
    const Declared d = declared_of(type_info, "initializer '" + name.str() + "'");
    if (name.str() == kLoraSlotInput && d.dtype == MLORA_DTYPE_INT64 && d.shape.size() == 1) {
      impl.batching = true;  // confirmed below: every LoRA input must be stacked
      continue;
    }
    if (name.str() == kLoraRanksInput && d.dtype == MLORA_DTYPE_INT64 && d.shape.size() == 2) {
      impl.ranks_input = true;
      impl.ranks_pairs = d.shape[0];
      continue;
    }
    if (impl.scale_inputs.count(name.str())) continue;  // int8 slots' scales: the runtime fills them
    LoraInput lora;
    const auto q = quantized.find(name.str());
    if (q != quantized.end()) {
      // A MatMulNBits LoRA input (quantized pair): its shape is fixed by the node's K, N and block size.
      lora = q->second;
      const auto init = scan.initializer_dims.find(name.str());
      if (quantized_shape(lora, d.dtype, init->second.size()) && found.emplace(lora.name, found_order.size()).second) {
        impl.quantized = true;
        found_order.push_back(std::move(lora));
      }
      continue;
    }
    if (describe_lora(name.str(), d, scan, lora) && found.emplace(lora.name, found_order.size()).second) {
      found_order.push_back(std::move(lora));
    }
  }
  return found_order;
}

// Regular inputs and outputs as the session declares them.
void describe_io(Model::Impl& impl, const ModelScan& scan, const std::unordered_map<std::string, size_t>& found) {
  const OrtApi& api = ort();
  OrtSession* session = impl.session.get();
  size_t n = 0;
  // Regular inputs: ORT's inputs minus the LoRA inputs (ORT does not list overridable initializers among
  // the inputs of an IR >= 4 model, but this also copes with a runtime that does).
  ort_check(api.SessionGetInputCount(session, &n), "counting inputs");
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(api.SessionGetInputName(session, i, name.allocator(), name.out()), "reading input names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(api.SessionGetInputTypeInfo(session, i, &type_info), "reading the type of input '" + name.str() + "'");
    Declared d = declared_of(type_info, "input '" + name.str() + "'");
    if (found.count(name.str()) || impl.scale_inputs.count(name.str())) continue;
    impl.input_index[name.str()] = impl.inputs.size();
    impl.input_names.push_back(name.str());
    impl.input_has_shape.push_back(scan.inputs_with_shape.count(name.str()) > 0);
    impl.input_required.push_back(scan.initializer_dims.count(name.str()) == 0);
    impl.input_symbols.push_back(std::move(d.symbols));
    impl.inputs.push_back(IoInfo{name.str(), d.dtype, std::move(d.shape)});
  }
  ort_check(api.SessionGetOutputCount(session, &n), "counting outputs");
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(api.SessionGetOutputName(session, i, name.allocator(), name.out()), "reading output names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(api.SessionGetOutputTypeInfo(session, i, &type_info), "reading the type of output '" + name.str() + "'");
    Declared d = declared_of(type_info, "output '" + name.str() + "'");
    impl.output_index[name.str()] = impl.outputs.size();
    impl.output_names.push_back(name.str());
    impl.outputs.push_back(IoInfo{name.str(), d.dtype, std::move(d.shape)});
  }
}

// Confirms adapter-aware batching (every LoRA input stacked) and numbers the fused kernel's pairs.
void detect_batching(Model::Impl& impl, const ModelOptions& options) {
  const std::string& onnx_path = impl.onnx_path;
  if (impl.batching) {
    impl.batching = !impl.loras.empty() &&
                    std::all_of(impl.loras.begin(), impl.loras.end(), [](const LoraInput& l) { return l.stacked; });
  }
  if (impl.batching) {
    impl.kernel = impl.ranks_input ? BatchKernel::kFused : BatchKernel::kGather;
    if (impl.kernel == BatchKernel::kFused) {
      // Pair p = the p-th A input (rank axis 1) in byte order of the names (prepare_batching.py does the same).
      std::vector<std::pair<std::string, size_t>> a_inputs;
      for (size_t i = 0; i < impl.loras.size(); ++i) {
        if (impl.loras[i].rank_axis == 1) a_inputs.emplace_back(impl.loras[i].name, i);
      }
      std::sort(a_inputs.begin(), a_inputs.end());
      for (size_t p = 0; p < a_inputs.size(); ++p) impl.loras[a_inputs[p].second].pair = static_cast<int32_t>(p);
      impl.pairs = static_cast<int64_t>(a_inputs.size());
      if (impl.ranks_pairs != impl.pairs) {
        fail(MLORA_STATUS_FORMAT, "model '" + onnx_path + "' declares '" + kLoraRanksInput + "' with " +
                                      std::to_string(impl.ranks_pairs) + " rows but has " + std::to_string(impl.pairs) +
                                      " stacked LoRA A inputs; prepare it again with "
                                      "`multilora prepare-batching`");
      }
    }
    impl.batch_slots = options.batch_slots;
  }
}

// A JSON metadata entry prepare_batching.py writes: `doc` holds it parsed (`found` false when the model has none)
// and bad(why) fails FORMAT naming the model and the key.
struct PreparedMetadata {
  std::string who;
  nlohmann::json doc;
  bool found = false;
  PreparedMetadata(const Model::Impl& impl, const ModelScan& scan, const char* key)
      : who("model '" + impl.onnx_path + "' metadata '" + key + "'") {
    const auto it = scan.metadata.find(key);
    if (it == scan.metadata.end()) return;
    doc = parse_json(it->second, who);
    found = true;
  }
  [[noreturn]] void bad(const std::string& why) const {
    fail(MLORA_STATUS_FORMAT, who + ": " + why + "; prepare the model again with `multilora prepare-batching`");
  }
};

// `multilora.slot_scales` (prepare_batching.py, --lora-dtype int8): {LoRA input: its float32 scales input}.
void read_slot_scales(Model::Impl& impl, const ModelScan& scan) {
  const PreparedMetadata meta(impl, scan, kSlotScalesMetadataKey);
  if (!meta.found) return;
  const nlohmann::json& doc = meta.doc;
  if (!doc.is_object()) meta.bad("not a JSON object");
  for (auto e = doc.begin(); e != doc.end(); ++e) {
    if (!e.value().is_string()) meta.bad("the value of '" + e.key() + "' is not a string");
    const std::string scales = e.value().get<std::string>();
    if (!impl.scale_inputs.insert(scales).second || scales == e.key()) meta.bad("'" + scales + "' is named twice");
    impl.slot_scales[e.key()] = scales;
  }
}

// Every int8 LoRA input of a fused model needs its scales input (and every entry an int8 LoRA input, and a
// scales input the model declares with a default).
void attach_slot_scales(Model::Impl& impl, const ModelScan& scan) {
  const std::string who = "model '" + impl.onnx_path + "' metadata '" + kSlotScalesMetadataKey + "'";
  const std::unordered_set<std::string> inputs(scan.inputs.begin(), scan.inputs.end());
  for (const auto& e : impl.slot_scales) {
    const auto l = impl.lora_index.find(e.first);
    if (l == impl.lora_index.end() || impl.loras[l->second].dtype != MLORA_DTYPE_INT8 ||
        impl.kernel != BatchKernel::kFused) {
      fail(MLORA_STATUS_FORMAT, who + ": '" + e.first + "' is not an int8 LoRA input of a model prepared with the " +
                                    "fused kernel; prepare the model again with `multilora prepare-batching`");
    }
    if (!inputs.count(e.second) || !scan.initializer_dims.count(e.second)) {
      fail(MLORA_STATUS_FORMAT, who + ": the scales input '" + e.second + "' of '" + e.first +
                                    "' is not an input with a default; prepare the model again");
    }
    impl.loras[l->second].scales = e.second;
  }
  for (const LoraInput& l : impl.loras) {
    if (l.dtype == MLORA_DTYPE_INT8 && impl.kernel == BatchKernel::kFused && l.scales.empty()) {
      fail(MLORA_STATUS_FORMAT, "model '" + impl.onnx_path + "': the int8 LoRA input '" + l.name +
                                    "' has no scales input in its metadata '" + kSlotScalesMetadataKey +
                                    "'; prepare the model again with `multilora prepare-batching --lora-dtype int8`");
    }
  }
}

// `multilora.dequantize` (prepare_batching.py): a JSON list of {target, weight, scales, zero_points, partner_weight,
// bits, block_size}, one per float LoRA input that replaced a MatMulNBits pair half.
void read_dequant_targets(Model::Impl& impl, const ModelScan& scan) {
  const PreparedMetadata meta(impl, scan, kDequantMetadataKey);
  if (!meta.found) return;
  const nlohmann::json& doc = meta.doc;
  if (!doc.is_array()) meta.bad("not a JSON list");
  for (const nlohmann::json& e : doc) {
    if (!e.is_object()) meta.bad("an entry is not an object");
    DequantTarget t;
    auto str = [&](const char* key, bool required) {
      const auto f = e.find(key);
      if (f == e.end() || f->is_null()) {
        if (required) meta.bad(std::string("an entry has no '") + key + "'");
        return std::string();
      }
      if (!f->is_string()) meta.bad(std::string("'") + key + "' is not a string");
      return f->get<std::string>();
    };
    auto num = [&](const char* key) {
      const auto f = e.find(key);
      if (f == e.end() || !f->is_number_integer()) meta.bad(std::string("an entry has no integer '") + key + "'");
      return f->get<int64_t>();
    };
    t.target = str("target", true);
    t.weight = str("weight", true);
    t.scales = str("scales", true);
    t.zero_points = str("zero_points", false);
    t.partner_weight = str("partner_weight", false);
    t.bits = num("bits");
    t.block_size = num("block_size");
    if (!(t.bits == 2 || t.bits == 4 || t.bits == 8) || t.block_size <= 0 || (t.block_size * t.bits) % 8) {
      meta.bad("entry '" + t.target + "' has bits " + std::to_string(t.bits) + " and block size " +
               std::to_string(t.block_size));
    }
    const auto l = impl.lora_index.find(t.target);
    // float32 as prepared; a half-precision slot dtype is fine too (dequantized blocks are float32 and are
    // converted like any float32 adapter's when the slot is written)
    // (int8 slots too: the dequantized float32 blocks are quantized to int8 when a set is built)
    if (l == impl.lora_index.end() ||
        !(dtype_is_float(impl.loras[l->second].dtype) || !impl.loras[l->second].scales.empty())) {
      meta.bad("'" + t.target + "' is not a floating-point LoRA input of the model");
    }
    impl.dequant.push_back(std::move(t));
  }
}

}  // namespace

std::shared_ptr<const Model> Model::open(const ModelSource& source, const ModelOptions& options) {
  check_model_options(source.path, options);
  auto impl = std::make_unique<Impl>();  // loads ONNX Runtime and holds the environment
  impl->path = source.path;
  impl->onnx_path = source.onnx_path;
  impl->genai = source.genai;
  const std::string& onnx_path = impl->onnx_path;

  // Look at the file first: duplicate graph inputs (ORT rejects them: "Duplicate definition-site for (x)"),
  // declared shapes, the initializers' dims (the defaults of LoRA inputs), the metadata (the base graph).
  MappedFile file;
  const ModelScan scan = scan_file(onnx_path, file);

  // The companion graph without the LoRA branch (multilora prepare-batching), opened over the same weights.
  MappedFile base_file;
  ModelScan base_scan;
  std::vector<std::pair<std::string, const OrtValue*>> shared;
  auto named = scan.metadata.find(kBaseGraphMetadataKey);
  if (options.base_graph && named != scan.metadata.end()) {
    const std::string dir = dir_of(onnx_path);
    impl->base_path = model_folder_file(dir, onnx_path, std::string("metadata '") + kBaseGraphMetadataKey + "'",
                                        named->second, options.allow_external_paths);
    try {
      base_scan = scan_file(impl->base_path, base_file);
    } catch (const Error& e) {
      fail(e.status(), "model '" + onnx_path + "' names the base graph '" + named->second + "' (metadata '" +
                           kBaseGraphMetadataKey + "'): " + e.what() +
                           "; prepare the model again, or set base_graph 0 in the model options to run without it");
    }
    OrtPrepackedWeightsContainer* container = nullptr;
    ort_check(ort().CreatePrepackedWeightsContainer(&container), "creating the pre-packed weights container");
    impl->prepacked.reset(container);
    shared = map_shared_weights(*impl, shared_weights_of(scan, base_scan, dir, options.allow_external_paths));
  }
  // ONNX Runtime has pre-packed what it needs from the mapped weights; pages it reads again (weights it uses
  // unpacked, such as the embedding table) come back from the page cache on use.
  auto drop_weight_pages = [&] {
    for (const MappedFile& f : impl->weight_files) {
      if (f.size()) ::madvise(const_cast<uint8_t*>(f.data()), f.size(), MADV_DONTNEED);
    }
  };
  impl->session = open_session(*impl, onnx_path, file, scan, source, options, shared);
  drop_weight_pages();
  if (!impl->base_path.empty()) {
    impl->base_session = open_session(*impl, impl->base_path, base_file, base_scan, source, options, shared);
    for (bool inputs : {true, false}) {
      // The base graph takes the LoRA graph's regular inputs (LoRA inputs aside) and gives the same outputs.
      std::vector<std::string> want = io_signature(impl->session.get(), inputs);
      if (inputs) {
        want.erase(std::remove_if(want.begin(), want.end(),
                                  [&](const std::string& sig) {
                                    const std::string name = sig.substr(0, sig.find(' '));
                                    return scan.initializer_dims.count(name) > 0;  // overridable (LoRA) inputs
                                  }),
                   want.end());
      }
      std::vector<std::string> got = io_signature(impl->base_session.get(), inputs);
      if (inputs) {
        got.erase(std::remove_if(got.begin(), got.end(),
                                 [&](const std::string& sig) {
                                   return base_scan.initializer_dims.count(sig.substr(0, sig.find(' '))) > 0;
                                 }),
                  got.end());
      }
      if (want != got) {
        std::string a, b;
        for (const auto& x : want) a += (a.empty() ? "" : "; ") + x;
        for (const auto& x : got) b += (b.empty() ? "" : "; ") + x;
        fail(MLORA_STATUS_FORMAT, "the base graph '" + impl->base_path + "' of model '" + onnx_path + "' has other " +
                                      (inputs ? "inputs" : "outputs") + " (" + b + ") than the model (" + a +
                                      "); prepare the model again, or set base_graph 0 in the model options");
      }
    }
    drop_weight_pages();
  }

  read_slot_scales(*impl, scan);
  std::unordered_map<std::string, size_t> found;
  const std::vector<LoraInput> found_order = find_lora_inputs(*impl, scan, found);
  describe_io(*impl, scan, found);
  Impl& m = *impl;
  // LoRA inputs in graph.input order (ORT's overridable order is not documented); any ORT lists that
  // graph.input does not (none expected) follow in ORT's order.
  for (const std::string& name : scan.inputs) {
    auto it = found.find(name);
    if (it == found.end() || m.lora_index.count(name)) continue;
    m.lora_index[name] = m.loras.size();
    m.loras.push_back(found_order[it->second]);
  }
  for (const LoraInput& lora : found_order) {
    if (m.lora_index.count(lora.name)) continue;
    m.lora_index[lora.name] = m.loras.size();
    m.loras.push_back(lora);
  }
  impl->declared_version = scan.model_version;
  detect_batching(*impl, options);
  attach_slot_scales(*impl, scan);
  if (impl->kernel == BatchKernel::kFused) {
    // The fused kernel only rewrites float32 pairs (x is float32); the slot dtype prepare-batching declared
    // (--lora-dtype) is storage, not signature: adapters made for the source model keep matching.
    std::vector<LoraInput> source = impl->loras;
    for (LoraInput& l : source) l.dtype = MLORA_DTYPE_FLOAT32;
    impl->fingerprint = compute_fingerprint(source);
  } else {
    impl->fingerprint = compute_fingerprint(impl->loras);
  }
  read_dequant_targets(*impl, scan);
  impl->lora_table.reset(impl->loras.size());
  for (size_t i = 0; i < impl->loras.size(); ++i) {
    const std::string& name = impl->loras[i].name;
    impl->lora_table.insert(name, name_hash(name), static_cast<uint32_t>(i),
                            [&](uint32_t k) { return std::string_view(impl->loras[k].name); });
  }
  return std::make_shared<const Model>(std::move(impl));
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

const std::string& Model::path() const noexcept { return impl_->path; }
const std::string& Model::onnx_path() const noexcept { return impl_->onnx_path; }
const std::vector<IoInfo>& Model::inputs() const noexcept { return impl_->inputs; }
const std::vector<IoInfo>& Model::outputs() const noexcept { return impl_->outputs; }
const std::vector<LoraInput>& Model::lora_inputs() const noexcept { return impl_->loras; }
int32_t Model::lora_fingerprint() const noexcept { return impl_->fingerprint; }
int64_t Model::declared_version() const noexcept { return impl_->declared_version; }
const GenaiConfig* Model::genai_config() const noexcept { return impl_->genai.get(); }
bool Model::quantized_lora() const noexcept { return impl_->quantized; }
const std::vector<DequantTarget>& Model::dequant_targets() const noexcept { return impl_->dequant; }
bool Model::batching() const noexcept { return impl_->batching; }
bool Model::accepts_lora_dtype(const LoraInput& in, int32_t dtype) const noexcept {
  auto slot_dtype = [](int32_t d) {
    return d == MLORA_DTYPE_FLOAT32 || d == MLORA_DTYPE_FLOAT16 || d == MLORA_DTYPE_BFLOAT16;
  };
  if (!in.scales.empty()) return slot_dtype(dtype);  // int8 slots: float adapters, quantized when a set is built
  if (dtype == in.dtype) return true;
  return impl_->kernel == BatchKernel::kFused && slot_dtype(in.dtype) && slot_dtype(dtype);
}
BatchKernel Model::batch_kernel() const noexcept { return impl_->kernel; }
int64_t Model::lora_pair_count() const noexcept { return impl_->pairs; }
size_t Model::batch_slots() const noexcept { return impl_->batch_slots; }

void Model::check_batch(const std::vector<std::string>& input_names, const std::vector<const OrtValue*>& inputs,
                        int64_t batch) const {
  const Impl& m = *impl_;
  // The batch dim: axis 0 of regular inputs whose declared axis 0 is symbolic and named like a batch
  // ("batch_size", "batch"); when no input names it so, every input with a symbolic axis 0.
  auto is_batch_symbol = [](const std::string& s) { return s.find("batch") != std::string::npos; };
  bool named = false;
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    named |= m.input_has_shape[i] && !m.inputs[i].shape.empty() && m.inputs[i].shape[0] < 0 &&
             is_batch_symbol(m.input_symbols[i][0]);
  }
  for (size_t i = 0; i < input_names.size() && i < inputs.size(); ++i) {
    auto it = m.input_index.find(input_names[i]);
    if (it == m.input_index.end() || !inputs[i]) continue;  // run() reports these
    const size_t idx = it->second;
    const IoInfo& want = m.inputs[idx];
    if (!m.input_has_shape[idx] || want.shape.empty() || want.shape[0] >= 0) continue;
    if (named && !is_batch_symbol(m.input_symbols[idx][0])) continue;
    OrtTensorTypeAndShapeInfo* raw_info = nullptr;
    ort_check(ort().GetTensorTypeAndShape(inputs[i], &raw_info), "inspecting input '" + input_names[i] + "'");
    OrtTensorTypeAndShapeInfoPtr info(raw_info);
    size_t rank = 0;
    ort_check(ort().GetDimensionsCount(info.get(), &rank), "inspecting input '" + input_names[i] + "'");
    if (rank == 0) continue;
    std::vector<int64_t> shape(rank);
    ort_check(ort().GetDimensions(info.get(), shape.data(), rank), "inspecting input '" + input_names[i] + "'");
    if (shape[0] != batch) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "input '" + input_names[i] + "' has batch size " + std::to_string(shape[0]) +
                                            " (shape " + shape_str(shape) +
                                            ") but the run options' per-row adapters "
                                            "were set for batch size " +
                                            std::to_string(batch));
    }
  }
}
OrtSession* Model::session() const noexcept { return impl_->session.get(); }

OrtSession* Model::session_for_run(bool base_only) const noexcept {
  if (base_only && impl_->base_session) {
    impl_->base_runs.fetch_add(1, std::memory_order_relaxed);
    return impl_->base_session.get();
  }
  impl_->lora_runs.fetch_add(1, std::memory_order_relaxed);
  return impl_->session.get();
}

const std::string& Model::base_graph_path() const noexcept { return impl_->base_path; }

void Model::session_runs(uint64_t* lora_runs, uint64_t* base_runs) const noexcept {
  if (lora_runs) *lora_runs = impl_->lora_runs.load(std::memory_order_relaxed);
  if (base_runs) *base_runs = impl_->base_runs.load(std::memory_order_relaxed);
}

const LoraInput* Model::find_lora(std::string_view name) const noexcept { return find_lora(name, name_hash(name)); }

const LoraInput* Model::find_lora(std::string_view name, uint64_t hash) const noexcept {
  const auto& loras = impl_->loras;
  const uint32_t i = impl_->lora_table.find(name, hash, [&](uint32_t k) { return std::string_view(loras[k].name); });
  return i == NameTable::kNone ? nullptr : &loras[i];
}

const IoInfo* Model::find_input(const std::string& name) const noexcept {
  auto it = impl_->input_index.find(name);
  return it == impl_->input_index.end() ? nullptr : &impl_->inputs[it->second];
}

std::vector<OrtValuePtr> Model::run(const std::vector<std::string>& input_names,
                                    const std::vector<const OrtValue*>& inputs,
                                    const std::vector<const char*>& lora_names,
                                    const std::vector<const OrtValue*>& lora_values,
                                    const std::vector<std::string>& output_names) const {
  const Impl& m = *impl_;
  const OrtApi& api = ort();
  if (input_names.size() != inputs.size()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         std::to_string(input_names.size()) + " input names but " + std::to_string(inputs.size()) + " input tensors");
  }
  if (lora_names.size() != lora_values.size()) {
    fail(MLORA_STATUS_INTERNAL, "LoRA feeds: " + std::to_string(lora_names.size()) + " names but " +
                                    std::to_string(lora_values.size()) + " values");
  }

  std::vector<bool> fed(m.inputs.size(), false);
  for (size_t i = 0; i < input_names.size(); ++i) {
    const std::string& name = input_names[i];
    if (m.lora_index.count(name)) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "input '" + name + "' is a LoRA parameter of model '" + m.path +
                                              "'; LoRA parameters come from the active adapters, not from inputs");
    }
    auto it = m.input_index.find(name);
    if (it == m.input_index.end()) {
      fail(MLORA_STATUS_NOT_FOUND,
           "model '" + m.path + "' has no input '" + name + "'; its inputs are " + join(m.input_names));
    }
    const size_t idx = it->second;
    if (fed[idx]) fail(MLORA_STATUS_INVALID_ARGUMENT, "input '" + name + "' is given more than once");
    fed[idx] = true;
    if (!inputs[i]) fail(MLORA_STATUS_INVALID_ARGUMENT, "input '" + name + "' has no tensor (NULL)");

    const IoInfo& want = m.inputs[idx];
    int is_tensor = 0;
    ort_check(api.IsTensor(inputs[i], &is_tensor), "inspecting input '" + name + "'");
    if (!is_tensor) fail(MLORA_STATUS_TYPE_MISMATCH, "input '" + name + "' is not a tensor");
    OrtTensorTypeAndShapeInfo* raw_info = nullptr;
    ort_check(api.GetTensorTypeAndShape(inputs[i], &raw_info), "inspecting input '" + name + "'");
    OrtTensorTypeAndShapeInfoPtr info(raw_info);
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    ort_check(api.GetTensorElementType(info.get(), &type), "inspecting input '" + name + "'");
    if (static_cast<int32_t>(type) != want.dtype) {
      fail(MLORA_STATUS_TYPE_MISMATCH, "input '" + name + "': expected " + dtype_name(want.dtype) + ", got " +
                                           dtype_name(static_cast<int32_t>(type)));
    }
    if (!m.input_has_shape[idx]) continue;  // declared without a shape: any rank
    size_t rank = 0;
    ort_check(api.GetDimensionsCount(info.get(), &rank), "inspecting input '" + name + "'");
    std::vector<int64_t> shape(rank);
    if (rank) ort_check(api.GetDimensions(info.get(), shape.data(), rank), "inspecting input '" + name + "'");
    bool ok = rank == want.shape.size();
    for (size_t d = 0; ok && d < rank; ++d) ok = want.shape[d] < 0 || want.shape[d] == shape[d];
    if (!ok) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "input '" + name + "': expected shape " +
                                            declared_shape_str(want.shape, m.input_symbols[idx]) + ", got " +
                                            shape_str(shape));
    }
  }
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    if (!fed[i] && m.input_required[i]) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "missing input '" + m.inputs[i].name + "' of model '" + m.path +
                                              "' (its inputs are " + join(m.input_names) + ")");
    }
  }

  std::vector<const char*> out_names;
  if (output_names.empty()) {
    for (const IoInfo& o : m.outputs) out_names.push_back(o.name.c_str());
  } else {
    std::unordered_set<std::string> seen;
    for (const std::string& name : output_names) {
      if (!m.output_index.count(name)) {
        fail(MLORA_STATUS_NOT_FOUND,
             "model '" + m.path + "' has no output '" + name + "'; its outputs are " + join(m.output_names));
      }
      if (!seen.insert(name).second) fail(MLORA_STATUS_INVALID_ARGUMENT, "output '" + name + "' is asked twice");
      out_names.push_back(name.c_str());
    }
  }

  std::vector<const char*> feed_names;
  std::vector<const OrtValue*> feeds;
  feed_names.reserve(inputs.size() + lora_values.size());
  feeds.reserve(inputs.size() + lora_values.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    feed_names.push_back(input_names[i].c_str());
    feeds.push_back(inputs[i]);
  }
  for (size_t i = 0; i < lora_values.size(); ++i) {
    feed_names.push_back(lora_names[i]);
    feeds.push_back(lora_values[i]);
  }

  std::vector<OrtValue*> raw_outputs(out_names.size(), nullptr);
  OrtStatus* status = api.Run(session_for_run(lora_values.empty()), nullptr, feed_names.data(), feeds.data(),
                              feeds.size(), out_names.data(), out_names.size(), raw_outputs.data());
  std::vector<OrtValuePtr> outputs;
  outputs.reserve(raw_outputs.size());
  for (OrtValue* v : raw_outputs) outputs.emplace_back(v);  // owns them even on failure
  if (status && api.GetErrorCode(status) == ORT_INVALID_ARGUMENT) {
    // Our fused op refusing its inputs (e.g. an int8 slot's scales missing or misshapen): INVALID_ARGUMENT with
    // its message, which names the node; other ONNX Runtime failures stay RUNTIME.
    const std::string message = escape_invalid_utf8(api.GetErrorMessage(status));
    if (message.find(std::string(kLoraSlotMatMulOp) + " node '") != std::string::npos) {
      api.ReleaseStatus(status);
      fail(MLORA_STATUS_INVALID_ARGUMENT, "running model '" + m.path + "': " + message);
    }
  }
  ort_check(status, "running model '" + m.path + "'");
  return outputs;
}

}  // namespace mlora
