// A read-only view of a .safetensors file (Hugging Face's format): 8-byte little-endian header length N,
// N bytes of JSON ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the data.
// Offsets are relative to the end of the header. The file is mapped; tensors point into the mapping and
// are NOT aligned to anything (the format does not promise it), so readers must copy (memcpy) elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace mlora {
namespace peft {

struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", ... as written
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; unaligned
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file, JSON object, each entry's dtype a string,
  // shape non-negative ints, data_offsets [begin <= end] within the data section and end - begin equal to
  // the element count times the dtype size (for dtypes whose size is known), no overlapping tensors.
  // Throws NOT_FOUND, IO, FORMAT; messages name the file and the tensor.
  static SafetensorsFile open(const std::string& path);

  const std::vector<StTensor>& tensors() const noexcept { return tensors_; }  // sorted by name
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  MappedFile file_;
  std::vector<StTensor> tensors_;
};

// Element size of a safetensors dtype string; 0 if unknown.
size_t st_dtype_size(const std::string& dtype) noexcept;

}  // namespace peft
}  // namespace mlora
