#include "model/model.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "gen/genai_config.h"
#include "io/mapped_file.h"
#include "io/read_file.h"
#include "kernels/lora_slot_matmul.h"
#include "model/tensor.h"
#include "run/slot_table.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/json.h"

namespace mlora {

namespace {

// ---- protobuf wire format ------------------------------------------------------------------------------
// Just enough of the wire format to read graph.input names and initializer names/dims, and to drop repeated
// graph.input entries. Field numbers (onnx.proto3):
//   ModelProto.graph = 7; GraphProto.initializer = 5, GraphProto.input = 11;
//   ValueInfoProto.name = 1, ValueInfoProto.type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2;
//   TensorProto.dims = 1 (repeated int64, packed or not), TensorProto.name = 8.
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphInitializer = 5;
constexpr uint32_t kGraphInput = 11;
constexpr uint32_t kValueInfoName = 1;
constexpr uint32_t kValueInfoType = 2;
constexpr uint32_t kTypeTensor = 1;
constexpr uint32_t kTensorTypeShape = 2;
constexpr uint32_t kTensorDims = 1;
constexpr uint32_t kTensorName = 8;

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct ProtoError {
  std::string what;
};

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t varint = 0;               // kVarint
  const uint8_t* begin = nullptr;    // first byte of the tag
  const uint8_t* payload = nullptr;  // kLengthDelimited: first byte of the payload
  const uint8_t* end = nullptr;      // one past the field (and past the payload)
};

class ProtoReader {
 public:
  ProtoReader(const uint8_t* begin, const uint8_t* end) : p_(begin), end_(end) {}
  bool done() const noexcept { return p_ >= end_; }

  Field next() {
    Field f;
    f.begin = p_;
    const uint64_t tag = varint();
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire = static_cast<uint32_t>(tag & 7);
    if (f.number == 0 || tag >> 32) throw ProtoError{"invalid field tag"};
    switch (f.wire) {
      case kVarint:
        f.varint = varint();
        break;
      case kFixed64:
        skip(8);
        break;
      case kFixed32:
        skip(4);
        break;
      case kLengthDelimited: {
        const uint64_t len = varint();
        if (len > static_cast<uint64_t>(end_ - p_)) throw ProtoError{"field length runs past the end"};
        f.payload = p_;
        p_ += len;
        break;
      }
      default:
        throw ProtoError{"unsupported wire type " + std::to_string(f.wire)};
    }
    f.end = p_;
    return f;
  }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) throw ProtoError{"truncated varint"};
      const uint8_t byte = *p_++;
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    throw ProtoError{"varint longer than 10 bytes"};
  }

 private:
  void skip(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw ProtoError{"truncated fixed-size field"};
    p_ += n;
  }
  const uint8_t* p_;
  const uint8_t* end_;
};

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

std::string field_string(const Field& f) {
  if (f.wire != kLengthDelimited) throw ProtoError{"string field with wire type " + std::to_string(f.wire)};
  return std::string(reinterpret_cast<const char*>(f.payload), static_cast<size_t>(f.end - f.payload));
}

// What the loader needs to know about a model file before ORT sees it.
struct ModelScan {
  bool has_graph = false;
  std::vector<std::string> inputs;                    // graph.input names in file order, duplicates included
  std::unordered_set<std::string> inputs_with_shape;  // graph.input entries declaring a tensor shape
  std::unordered_map<std::string, std::vector<int64_t>> initializer_dims;
  size_t duplicate_inputs = 0;
};

bool value_info_has_shape(const Field& type_field) {
  ProtoReader type(type_field.payload, type_field.end);
  while (!type.done()) {
    const Field t = type.next();
    if (t.number != kTypeTensor || t.wire != kLengthDelimited) continue;
    ProtoReader tensor(t.payload, t.end);
    while (!tensor.done()) {
      const Field s = tensor.next();
      if (s.number == kTensorTypeShape && s.wire == kLengthDelimited) return true;
    }
  }
  return false;
}

void scan_graph(const Field& graph, ModelScan& scan, std::unordered_set<std::string>& seen) {
  scan.has_graph = true;
  ProtoReader r(graph.payload, graph.end);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kGraphInput && f.wire == kLengthDelimited) {
      ProtoReader vi(f.payload, f.end);
      std::string name;
      bool has_shape = false;
      while (!vi.done()) {
        const Field g = vi.next();
        if (g.number == kValueInfoName) name = field_string(g);
        if (g.number == kValueInfoType && g.wire == kLengthDelimited) has_shape = value_info_has_shape(g);
      }
      if (!seen.insert(name).second) {
        ++scan.duplicate_inputs;
        continue;  // the first declaration is the one kept
      }
      scan.inputs.push_back(name);
      if (has_shape) scan.inputs_with_shape.insert(name);
    } else if (f.number == kGraphInitializer && f.wire == kLengthDelimited) {
      ProtoReader t(f.payload, f.end);
      std::string name;
      std::vector<int64_t> dims;
      while (!t.done()) {
        const Field g = t.next();
        if (g.number == kTensorName) {
          name = field_string(g);
        } else if (g.number == kTensorDims && g.wire == kVarint) {
          dims.push_back(static_cast<int64_t>(g.varint));
        } else if (g.number == kTensorDims && g.wire == kLengthDelimited) {
          ProtoReader packed(g.payload, g.end);
          while (!packed.done()) dims.push_back(static_cast<int64_t>(packed.varint()));
        }
      }
      scan.initializer_dims[name] = std::move(dims);
    }
  }
}

ModelScan scan_model(const uint8_t* data, size_t size) {
  ModelScan scan;
  std::unordered_set<std::string> seen;
  ProtoReader r(data, data + size);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kModelGraph && f.wire == kLengthDelimited) scan_graph(f, scan, seen);
  }
  return scan;
}

// The model bytes with every graph.input entry whose name was already declared removed.
std::string drop_duplicate_inputs(const uint8_t* data, size_t size) {
  std::string out;
  out.reserve(size);
  std::unordered_set<std::string> seen;
  ProtoReader r(data, data + size);
  while (!r.done()) {
    const Field f = r.next();
    if (!(f.number == kModelGraph && f.wire == kLengthDelimited)) {
      out.append(reinterpret_cast<const char*>(f.begin), static_cast<size_t>(f.end - f.begin));
      continue;
    }
    std::string graph;
    graph.reserve(static_cast<size_t>(f.end - f.payload));
    ProtoReader g(f.payload, f.end);
    while (!g.done()) {
      const Field h = g.next();
      if (h.number == kGraphInput && h.wire == kLengthDelimited) {
        ProtoReader vi(h.payload, h.end);
        std::string name;
        while (!vi.done()) {
          const Field v = vi.next();
          if (v.number == kValueInfoName) name = field_string(v);
        }
        if (!seen.insert(name).second) continue;
      }
      graph.append(reinterpret_cast<const char*>(h.begin), static_cast<size_t>(h.end - h.begin));
    }
    append_varint(out, (static_cast<uint64_t>(kModelGraph) << 3) | kLengthDelimited);
    append_varint(out, graph.size());
    out += graph;
  }
  return out;
}

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

// Declared type of one session input/output/overridable initializer.
struct Declared {
  int32_t dtype = 0;  // ONNX number (also for types multilora cannot feed); 0 = not a tensor
  std::vector<int64_t> shape;
  std::vector<std::string> symbols;  // per dim, "" if none
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

// Resolves a GenAI model folder to its decoder .onnx file.
std::string decoder_from_genai_folder(const std::string& dir, bool allow_external_paths) {
  const std::string config_path = dir + "/genai_config.json";
  // Non-blocking open, regular files only, size cap: a FIFO, a directory or /dev/zero is an IO error.
  std::string text;
  try {
    text = read_small_file(config_path);
  } catch (const Error& e) {
    if (e.status() != MLORA_STATUS_NOT_FOUND) throw;
    fail(MLORA_STATUS_NOT_FOUND, "model folder '" + dir + "' has no genai_config.json (expected '" + config_path +
                                     "'); pass an .onnx file or a GenAI model folder");
  }
  const nlohmann::json config = parse_json(text, "'" + config_path + "'");
  // Only the decoder file name is read here; Model::open parses the whole file with parse_genai_config.
  const nlohmann::json* filename = nullptr;
  if (config.is_object() && config.contains("model") && config["model"].is_object() &&
      config["model"].contains("decoder") && config["model"]["decoder"].is_object() &&
      config["model"]["decoder"].contains("filename")) {
    filename = &config["model"]["decoder"]["filename"];
  }
  if (!filename || !filename->is_string() || filename->get<std::string>().empty()) {
    fail(MLORA_STATUS_FORMAT, "'" + config_path + "' has no string model.decoder.filename");
  }
  return model_folder_file(dir, config_path, "model.decoder.filename", filename->get<std::string>(),
                           allow_external_paths);
}

}  // namespace

// ---- Model ---------------------------------------------------------------------------------------------

struct Model::Impl {
  EnvHold env;  // first member: released last, after the session
  std::string path;
  std::string onnx_path;
  OrtSessionPtr session;
  std::vector<IoInfo> inputs;
  std::vector<std::vector<std::string>> input_symbols;  // per regular input, symbolic dim names
  std::vector<bool> input_has_shape;                    // false: declared without a shape (rank unknown)
  std::vector<bool> input_required;                     // false for inputs that have an initializer
  std::vector<IoInfo> outputs;
  std::vector<LoraInput> loras;
  std::unordered_map<std::string, size_t> input_index, output_index, lora_index;
  std::vector<std::string> input_names, output_names;  // for messages
  int32_t fingerprint = 1;
  bool batching = false;     // prepared for adapter-aware batching (lora_slot + stacked LoRA inputs)
  bool ranks_input = false;  // has lora_ranks: prepared for the fused kernel
  int64_t ranks_pairs = 0;   // lora_ranks' declared P
  BatchKernel kernel = BatchKernel::kNone;
  int64_t pairs = 0;
  size_t batch_slots = 0;
  std::unique_ptr<SlotTable> slot_table;
  std::shared_ptr<const GenaiConfig> genai;  // set when the model is a folder with genai_config.json
};

namespace {

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

}  // namespace

std::shared_ptr<const Model> Model::open(const std::string& path, const ModelOptions& options) {
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
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO,
         "cannot open model '" + path + "': " + std::strerror(err));
  }
  std::string onnx_path = path;
  std::shared_ptr<const GenaiConfig> genai;  // Generation: the folder's genai_config.json, fully parsed
  if (S_ISDIR(st.st_mode)) {
    onnx_path = decoder_from_genai_folder(path, options.allow_external_paths);
    genai = std::make_shared<const GenaiConfig>(parse_genai_config(path + "/genai_config.json"));
    struct stat onnx_st;
    if (::stat(onnx_path.c_str(), &onnx_st) != 0) {
      const int err = errno;
      fail(err == ENOENT || err == ENOTDIR ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO,
           "cannot open the decoder '" + onnx_path + "' named by '" + path +
               "/genai_config.json': " + std::strerror(err));
    }
  }

  auto impl = std::make_unique<Impl>();  // loads ONNX Runtime and holds the environment
  impl->path = path;
  impl->onnx_path = onnx_path;
  impl->genai = std::move(genai);
  const OrtApi& api = ort();

  // Look at the file first: duplicate graph inputs (ORT rejects them: "Duplicate definition-site for (x)"),
  // declared shapes, and the initializers' dims (the defaults of LoRA inputs).
  MappedFile file = MappedFile::open(onnx_path);
  ModelScan scan;
  try {
    scan = scan_model(file.data(), file.size());
  } catch (const ProtoError& e) {
    fail(MLORA_STATUS_FORMAT, "'" + onnx_path + "' is not an ONNX model (" + e.what + ")");
  }
  if (!scan.has_graph) fail(MLORA_STATUS_FORMAT, "'" + onnx_path + "' is not an ONNX model (no graph)");

  OrtSessionOptions* raw_options = nullptr;
  ort_check(api.CreateSessionOptions(&raw_options), "creating session options");
  OrtSessionOptionsPtr session_options(raw_options);
  // Generation: genai_config.json's session options; the caller's options below take precedence.
  if (impl->genai) apply_genai_session_options(*impl->genai, options, session_options.get());
  ort_check(api.SetSessionLogId(session_options.get(), base_name(onnx_path).c_str()), "setting the session log id");
  ort_check(api.SetSessionLogSeverityLevel(session_options.get(), options.log_level), "setting the log level");
  if (options.intra_op_threads > 0) {
    ort_check(api.SetIntraOpNumThreads(session_options.get(), options.intra_op_threads),
              "setting " + std::to_string(options.intra_op_threads) + " intra-op threads");
  }
  add_lora_op_domain(session_options.get());  // com.multilora ops of models prepared with the fused kernel
  bool has_external_folder = false;
  const std::string kExternalFolderKey = "session.model_external_initializers_file_folder_path";
  for (const auto& [key, value] : options.config_entries) {
    ort_check(api.AddSessionConfigEntry(session_options.get(), key.c_str(), value.c_str()),
              "setting session config entry '" + key + "' = '" + value + "'");
    has_external_folder |= key == kExternalFolderKey;
  }

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

  OrtSession* raw_session = nullptr;
  const std::string context = "ONNX Runtime cannot load model '" + onnx_path + "'";
  if (!scan.duplicate_inputs) {
    ort_check(api.CreateSession(impl->env.env, onnx_path.c_str(), session_options.get(), &raw_session), context);
  } else {
    // A session from bytes resolves external data (model.onnx.data) against this folder, not the cwd.
    if (!has_external_folder) {
      ort_check(api.AddSessionConfigEntry(session_options.get(), kExternalFolderKey.c_str(),
                                          dir_of(absolute(onnx_path)).c_str()),
                "setting the external data folder");
    }
    ort_check(api.CreateSessionFromArray(impl->env.env, rewritten.data(), rewritten.size(), session_options.get(),
                                         &raw_session),
              context);
    std::string().swap(rewritten);
  }
  impl->session.reset(raw_session);
  OrtSession* session = raw_session;

  // LoRA inputs among the overridable initializers (inputs with a same-named initializer).
  std::vector<LoraInput> found_order;  // ORT's order
  std::unordered_map<std::string, size_t> found;
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
      impl->batching = true;  // confirmed below: every LoRA input must be stacked
      continue;
    }
    if (name.str() == kLoraRanksInput && d.dtype == MLORA_DTYPE_INT64 && d.shape.size() == 2) {
      impl->ranks_input = true;
      impl->ranks_pairs = d.shape[0];
      continue;
    }
    LoraInput lora;
    if (describe_lora(name.str(), d, scan, lora) && found.emplace(lora.name, found_order.size()).second) {
      found_order.push_back(std::move(lora));
    }
  }
  // Regular inputs: ORT's inputs minus the LoRA inputs (ORT does not list overridable initializers among
  // the inputs of an IR >= 4 model, but this also copes with a runtime that does).
  ort_check(api.SessionGetInputCount(session, &n), "counting inputs");
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(api.SessionGetInputName(session, i, name.allocator(), name.out()), "reading input names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(api.SessionGetInputTypeInfo(session, i, &type_info), "reading the type of input '" + name.str() + "'");
    Declared d = declared_of(type_info, "input '" + name.str() + "'");
    if (found.count(name.str())) continue;
    impl->input_index[name.str()] = impl->inputs.size();
    impl->input_names.push_back(name.str());
    impl->input_has_shape.push_back(scan.inputs_with_shape.count(name.str()) > 0);
    impl->input_required.push_back(scan.initializer_dims.count(name.str()) == 0);
    impl->input_symbols.push_back(std::move(d.symbols));
    impl->inputs.push_back(IoInfo{name.str(), d.dtype, std::move(d.shape)});
  }
  ort_check(api.SessionGetOutputCount(session, &n), "counting outputs");
  for (size_t i = 0; i < n; ++i) {
    OrtName name;
    ort_check(api.SessionGetOutputName(session, i, name.allocator(), name.out()), "reading output names");
    OrtTypeInfo* type_info = nullptr;
    ort_check(api.SessionGetOutputTypeInfo(session, i, &type_info), "reading the type of output '" + name.str() + "'");
    Declared d = declared_of(type_info, "output '" + name.str() + "'");
    impl->output_index[name.str()] = impl->outputs.size();
    impl->output_names.push_back(name.str());
    impl->outputs.push_back(IoInfo{name.str(), d.dtype, std::move(d.shape)});
  }
  // LoRA inputs in graph.input order (ORT's overridable order is not documented); any ORT lists that
  // graph.input does not (none expected) follow in ORT's order.
  for (const std::string& name : scan.inputs) {
    auto it = found.find(name);
    if (it == found.end() || impl->lora_index.count(name)) continue;
    impl->lora_index[name] = impl->loras.size();
    impl->loras.push_back(found_order[it->second]);
  }
  for (const LoraInput& lora : found_order) {
    if (impl->lora_index.count(lora.name)) continue;
    impl->lora_index[lora.name] = impl->loras.size();
    impl->loras.push_back(lora);
  }
  impl->fingerprint = compute_fingerprint(impl->loras);
  if (impl->batching) {
    impl->batching = !impl->loras.empty() &&
                     std::all_of(impl->loras.begin(), impl->loras.end(), [](const LoraInput& l) { return l.stacked; });
  }
  if (impl->batching) {
    impl->kernel = impl->ranks_input ? BatchKernel::kFused : BatchKernel::kGather;
    if (impl->kernel == BatchKernel::kFused) {
      // Pair p = the p-th A input (rank axis 1) in byte order of the names (prepare_batching.py does the same).
      std::vector<std::pair<std::string, size_t>> a_inputs;
      for (size_t i = 0; i < impl->loras.size(); ++i) {
        if (impl->loras[i].rank_axis == 1) a_inputs.emplace_back(impl->loras[i].name, i);
      }
      std::sort(a_inputs.begin(), a_inputs.end());
      for (size_t p = 0; p < a_inputs.size(); ++p) impl->loras[a_inputs[p].second].pair = static_cast<int32_t>(p);
      impl->pairs = static_cast<int64_t>(a_inputs.size());
      if (impl->ranks_pairs != impl->pairs) {
        fail(MLORA_STATUS_FORMAT, "model '" + onnx_path + "' declares '" + kLoraRanksInput + "' with " +
                                      std::to_string(impl->ranks_pairs) + " rows but has " +
                                      std::to_string(impl->pairs) +
                                      " stacked LoRA A inputs; prepare it again with "
                                      "`multilora prepare-batching`");
      }
    }
    impl->batch_slots = options.batch_slots;
    impl->slot_table = std::make_unique<SlotTable>(path, impl->loras, impl->kernel, impl->pairs, impl->batch_slots);
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
const GenaiConfig* Model::genai_config() const noexcept { return impl_->genai.get(); }
bool Model::batching() const noexcept { return impl_->batching; }
BatchKernel Model::batch_kernel() const noexcept { return impl_->kernel; }
int64_t Model::lora_pair_count() const noexcept { return impl_->pairs; }
size_t Model::batch_slots() const noexcept { return impl_->batch_slots; }
SlotTable& Model::slot_table() const {
  if (!impl_->slot_table) fail(MLORA_STATUS_INTERNAL, "model '" + impl_->path + "' has no slot table");
  return *impl_->slot_table;
}

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

const LoraInput* Model::find_lora(const std::string& name) const noexcept {
  auto it = impl_->lora_index.find(name);
  return it == impl_->lora_index.end() ? nullptr : &impl_->loras[it->second];
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
  OrtStatus* status = api.Run(m.session.get(), nullptr, feed_names.data(), feeds.data(), feeds.size(), out_names.data(),
                              out_names.size(), raw_outputs.data());
  std::vector<OrtValuePtr> outputs;
  outputs.reserve(raw_outputs.size());
  for (OrtValue* v : raw_outputs) outputs.emplace_back(v);  // owns them even on failure
  ort_check(status, "running model '" + m.path + "'");
  return outputs;
}

}  // namespace mlora
