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

// A com.microsoft MatMulNBits node (the weight-only quantized MatMul of int4/int8 models): Y = X · W^T with
// W [N, K] stored blockwise in `inputs[1]` (uint8 [N, ceil(K/block_size), block_size*bits/8]), its scales in
// inputs[2] and optional zero points in inputs[3].
struct NBitsNode {
  std::string name;
  std::vector<std::string> inputs, outputs;
  int64_t K = 0, N = 0, bits = 4, block_size = 0, accuracy_level = 0;
};

// A main-graph initializer whose data lives in an external file (TensorProto.data_location = EXTERNAL).
struct ExternalInitializer {
  std::string name;
  int32_t dtype = 0;  // TensorProto.data_type (ONNX numbering)
  std::vector<int64_t> dims;
  std::string location;  // as written in the file (relative to the model's folder)
  int64_t offset = 0;
  int64_t length = -1;  // -1 = not given (to the end of the file)
};

// What the loader needs to know about a model file before ORT sees it.
struct ModelScan {
  bool has_graph = false;
  std::vector<std::string> inputs;                    // graph.input names in file order, duplicates included
  std::unordered_set<std::string> inputs_with_shape;  // graph.input entries declaring a tensor shape
  std::unordered_map<std::string, std::vector<int64_t>> initializer_dims;
  size_t duplicate_inputs = 0;
  int64_t model_version = 0;  // ModelProto.model_version: the version the model declares (0 = none)
  std::vector<ExternalInitializer> external_initializers;  // file order
  std::unordered_map<std::string, std::string> metadata;   // ModelProto.metadata_props (last value of a key)
  std::vector<NBitsNode> nbits_nodes;                      // the main graph's MatMulNBits nodes, graph order
  std::unordered_map<std::string, int> consumers;          // tensor name -> number of main-graph node inputs naming it
};

// Throws ProtoError.
ModelScan scan_model(const uint8_t* data, size_t size);
// The model bytes with every graph.input entry whose name was already declared removed. Throws ProtoError.
std::string drop_duplicate_inputs(const uint8_t* data, size_t size);

}  // namespace mlora
