// An adapter's contents: immutable after construction, shared as std::shared_ptr<const Adapter>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mlora {

struct Param {
  std::string name;
  int32_t dtype = 0;           // ONNX TensorProto numbering
  std::vector<int64_t> dims;   // may contain 0 (zero-width)
  const void* data = nullptr;  // points into the mapping / owned buffer; aligned to the element size
  size_t nbytes = 0;           // == element_count(dims) * dtype_size(dtype)
  // A float32 [K, N] parameter dequantized from a MatMulNBits block of at most 4 bits (adapter/dequantize.h):
  // the file's scales as float32 [ceil(K / scale_block), N], so int8 slots hold the blocks exactly
  // (int8 = q - zero point). Null otherwise.
  const float* block_scales = nullptr;
  int64_t scale_block = 0;
};

class Adapter {
 public:
  // Maps and verifies an .onnx_adapter file (flatbuffers verifier + our checks). Throws NOT_FOUND, IO,
  // FORMAT with the path and, where it applies, the parameter name and expected vs actual value.
  // copy: read the file into private memory instead of mapping it (MLORA_LOAD_COPY).
  static std::shared_ptr<const Adapter> open_file(const std::string& path, bool copy = false);
  // Same from a buffer; the bytes are copied into an 8-aligned buffer first. `label` names it in errors.
  static std::shared_ptr<const Adapter> open_memory(const void* data, size_t size, const std::string& label);
  // A view of `base` whose parameter i is named names[i] (same bytes, versions, source; keeps base alive).
  static std::shared_ptr<const Adapter> renamed(std::shared_ptr<const Adapter> base,
                                                const std::vector<std::string>& names);

  // A view of `base` with `params` instead of its own (pointing into base's bytes or into `owned`, which the
  // view keeps alive; owned_bytes counts as copied), e.g. quantized parameters replaced by dequantized ones.
  static std::shared_ptr<const Adapter> with_params(std::shared_ptr<const Adapter> base, std::vector<Param> params,
                                                    std::vector<std::shared_ptr<void>> owned, uint64_t owned_bytes);

  int32_t format_version() const noexcept;
  int32_t adapter_version() const noexcept;
  int32_t model_version() const noexcept;
  const std::vector<Param>& params() const noexcept;  // file order
  const Param* find(const std::string& name) const noexcept;
  // Largest rank: dim 1 of params named *lora_A*, dim 0 of *lora_B*; 0 if none.
  int64_t rank() const noexcept;
  uint64_t bytes_mapped() const noexcept;      // size of the file mapping (0 for memory-loaded)
  uint64_t bytes_copied() const noexcept;      // bytes copied (memory-loaded buffer, misaligned params)
  const std::string& source() const noexcept;  // path, or the label for memory-loaded adapters

  ~Adapter();

  struct Storage;  // defined in adapter.cpp (mapping + owned buffers)
  Adapter(std::unique_ptr<Storage> storage);

 private:
  std::unique_ptr<Storage> storage_;
};

struct ParamView {  // input to the writer
  std::string name;
  int32_t dtype;
  std::vector<int64_t> dims;
  const void* data;
  size_t nbytes;
};

// Serialises an .onnx_adapter buffer (format_version 1, raw_data aligned to 8). Throws INVALID_ARGUMENT
// on empty/duplicate/non-UTF-8 names, unsupported dtype, or nbytes != dims * dtype size (naming the parameter),
// and on what ONNX Runtime's loader refuses: bool parameters and scalars (empty dims).
std::vector<uint8_t> serialize_adapter(const std::vector<ParamView>& params, int32_t adapter_version,
                                       int32_t model_version);
// Writes serialize_adapter(...) to `path` atomically (temp file beside it + rename). Throws IO.
void write_adapter_file(const std::string& path, const std::vector<ParamView>& params, int32_t adapter_version,
                        int32_t model_version);

}  // namespace mlora
