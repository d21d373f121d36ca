#include "model/onnx_scan.h"

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
constexpr uint32_t kModelMetadata = 14;  // ModelProto.metadata_props (StringStringEntryProto: key 1, value 2)
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
      ProtoReader e(f.payload, f.end);
      std::string key, value;
      while (!e.done()) {
        const Field g = e.next();
        if (g.number == 1 && g.wire == kLengthDelimited) key = field_string(g);
        if (g.number == 2 && g.wire == kLengthDelimited) value = field_string(g);
      }
      scan.metadata[key] = value;
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
