#include "model/onnx_scan.h"

#include <utility>

namespace mlora {

namespace {

// Just enough of the wire format to read graph.input names and initializer names/dims, and to drop repeated
// graph.input entries. Field numbers (onnx.proto3):
//   ModelProto.graph = 7; GraphProto.initializer = 5, GraphProto.input = 11;
//   ValueInfoProto.name = 1, ValueInfoProto.type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2;
//   TensorProto.dims = 1 (repeated int64, packed or not), TensorProto.name = 8.
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kModelVersion = 5;  // ModelProto.model_version (int64)
constexpr uint32_t kGraphInitializer = 5;
constexpr uint32_t kGraphInput = 11;
constexpr uint32_t kValueInfoName = 1;
constexpr uint32_t kValueInfoType = 2;
constexpr uint32_t kTypeTensor = 1;
constexpr uint32_t kTensorTypeShape = 2;
constexpr uint32_t kTensorDims = 1;
constexpr uint32_t kTensorName = 8;
constexpr uint32_t kTensorDataType = 2;       // TensorProto.data_type (int32)
constexpr uint32_t kTensorExternalData = 13;  // TensorProto.external_data (StringStringEntryProto)
constexpr uint32_t kTensorDataLocation = 14;  // TensorProto.data_location (1 = EXTERNAL)
constexpr uint32_t kModelMetadata = 14;       // ModelProto.metadata_props (StringStringEntryProto)
constexpr uint32_t kEntryKey = 1, kEntryValue = 2;
constexpr uint32_t kGraphNode = 1;
constexpr uint32_t kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5, kNodeDomain = 7;
constexpr uint32_t kAttrName = 1, kAttrInt = 3;

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

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

std::pair<std::string, std::string> string_entry(const Field& f) {
  std::pair<std::string, std::string> kv;
  ProtoReader r(f.payload, f.end);
  while (!r.done()) {
    const Field g = r.next();
    if (g.number == kEntryKey) kv.first = field_string(g);
    if (g.number == kEntryValue) kv.second = field_string(g);
  }
  return kv;
}

// Non-negative decimal int64 or -1.
int64_t parse_offset(const std::string& s) {
  if (s.empty() || s.size() > 18) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

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

// One node: counts its inputs' consumers; MatMulNBits nodes are kept with their integer attributes.
void scan_node(const Field& node, ModelScan& scan) {
  ProtoReader r(node.payload, node.end);
  NBitsNode n;
  std::string op, domain;
  std::vector<std::pair<std::string, int64_t>> attrs;
  while (!r.done()) {
    const Field f = r.next();
    if (f.wire != kLengthDelimited) continue;
    if (f.number == kNodeInput) {
      n.inputs.push_back(field_string(f));
    } else if (f.number == kNodeOutput) {
      n.outputs.push_back(field_string(f));
    } else if (f.number == kNodeName) {
      n.name = field_string(f);
    } else if (f.number == kNodeOpType) {
      op = field_string(f);
    } else if (f.number == kNodeDomain) {
      domain = field_string(f);
    } else if (f.number == kNodeAttribute) {
      ProtoReader a(f.payload, f.end);
      std::string name;
      int64_t value = 0;
      bool has_int = false;
      while (!a.done()) {
        const Field g = a.next();
        if (g.number == kAttrName && g.wire == kLengthDelimited) name = field_string(g);
        if (g.number == kAttrInt && g.wire == kVarint) {
          value = static_cast<int64_t>(g.varint);
          has_int = true;
        }
      }
      if (has_int) attrs.emplace_back(name, value);
    }
  }
  for (const std::string& in : n.inputs) {
    if (!in.empty()) ++scan.consumers[in];
  }
  if (op != "MatMulNBits" || domain != "com.microsoft") return;
  for (const auto& [name, value] : attrs) {
    if (name == "K") n.K = value;
    if (name == "N") n.N = value;
    if (name == "bits") n.bits = value;
    if (name == "block_size") n.block_size = value;
    if (name == "accuracy_level") n.accuracy_level = value;
  }
  scan.nbits_nodes.push_back(std::move(n));
}

void scan_graph(const Field& graph, ModelScan& scan, std::unordered_set<std::string>& seen) {
  scan.has_graph = true;
  ProtoReader r(graph.payload, graph.end);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kGraphNode && f.wire == kLengthDelimited) {
      scan_node(f, scan);
    } else if (f.number == kGraphInput && f.wire == kLengthDelimited) {
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
      ExternalInitializer ext;
      bool external = false, bad_entry = false;
      while (!t.done()) {
        const Field g = t.next();
        if (g.number == kTensorName) {
          name = field_string(g);
        } else if (g.number == kTensorDataType && g.wire == kVarint) {
          ext.dtype = static_cast<int32_t>(g.varint);
        } else if (g.number == kTensorDataLocation && g.wire == kVarint) {
          external = g.varint == 1;
        } else if (g.number == kTensorExternalData && g.wire == kLengthDelimited) {
          const auto kv = string_entry(g);
          if (kv.first == "location") {
            ext.location = kv.second;
          } else if (kv.first == "offset") {
            ext.offset = parse_offset(kv.second);
            bad_entry |= ext.offset < 0;
          } else if (kv.first == "length") {
            ext.length = parse_offset(kv.second);
            bad_entry |= ext.length < 0;
          }
        } else if (g.number == kTensorDims && g.wire == kVarint) {
          dims.push_back(static_cast<int64_t>(g.varint));
        } else if (g.number == kTensorDims && g.wire == kLengthDelimited) {
          ProtoReader packed(g.payload, g.end);
          while (!packed.done()) dims.push_back(static_cast<int64_t>(packed.varint()));
        }
      }
      if (external && !bad_entry && !ext.location.empty()) {
        ext.name = name;
        ext.dims = dims;
        scan.external_initializers.push_back(std::move(ext));
      }
      scan.initializer_dims[name] = std::move(dims);
    }
  }
}

}  // namespace

ModelScan scan_model(const uint8_t* data, size_t size) {
  ModelScan scan;
  std::unordered_set<std::string> seen;
  ProtoReader r(data, data + size);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kModelGraph && f.wire == kLengthDelimited) scan_graph(f, scan, seen);
    if (f.number == kModelVersion && f.wire == kVarint) scan.model_version = static_cast<int64_t>(f.varint);
    if (f.number == kModelMetadata && f.wire == kLengthDelimited) {
      auto kv = string_entry(f);
      scan.metadata[kv.first] = std::move(kv.second);
    }
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

}  // namespace mlora
