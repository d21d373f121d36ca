// Reading an ONNX model file before ONNX Runtime sees it, without protobuf: just enough of the wire format
// to list the graph's inputs (and whether each declares a shape), the initializers' dims (the defaults of
// LoRA inputs), and to drop repeated graph.input entries (ONNX Runtime refuses a graph that declares an
// input twice: "Duplicate definition-site").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mlora {

// The bytes are not a valid protobuf message (what: the reason).
struct ProtoError {
  std::string what;
};

// What the loader needs to know about a model file before ORT sees it.
struct ModelScan {
  bool has_graph = false;
  std::vector<std::string> inputs;                    // graph.input names in file order, duplicates included
  std::unordered_set<std::string> inputs_with_shape;  // graph.input entries declaring a tensor shape
  std::unordered_map<std::string, std::vector<int64_t>> initializer_dims;
  size_t duplicate_inputs = 0;
};

// Throws ProtoError.
ModelScan scan_model(const uint8_t* data, size_t size);
// The model bytes with every graph.input entry whose name was already declared removed. Throws ProtoError.
std::string drop_duplicate_inputs(const uint8_t* data, size_t size);

}  // namespace mlora
