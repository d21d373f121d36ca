// The payload of mlora_tensor_t: dtype, shape, a contiguous buffer and whatever keeps it alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ort/ort.h"

namespace mlora {

class Tensor {
 public:
  // Copies data (checks dtype support, dims >= 0, nbytes == count * size; throws INVALID_ARGUMENT /
  // SHAPE_MISMATCH). The copy is 64-byte aligned.
  static std::shared_ptr<const Tensor> copy_of(int32_t dtype, std::vector<int64_t> shape, const void* data,
                                               size_t nbytes);
  // Wraps memory kept alive by `owner` (may be null for caller-borrowed memory). Same checks, plus
  // alignment to the element size (INVALID_ARGUMENT).
  static std::shared_ptr<const Tensor> view(int32_t dtype, std::vector<int64_t> shape, const void* data, size_t nbytes,
                                            std::shared_ptr<const void> owner);
  // Takes ownership of an ORT tensor value (a Run output).
  static std::shared_ptr<const Tensor> from_ort(OrtValuePtr value);

  int32_t dtype() const noexcept { return dtype_; }
  const std::vector<int64_t>& shape() const noexcept { return shape_; }
  const void* data() const noexcept { return data_; }
  size_t nbytes() const noexcept { return nbytes_; }
  // An OrtValue over this tensor's memory (no copy). Valid while this Tensor lives. Created on first use
  // (so tensors work without ONNX Runtime loaded); thread-safe.
  const OrtValue* ort_value() const;

  Tensor(int32_t dtype, std::vector<int64_t> shape, const void* data, size_t nbytes, std::shared_ptr<const void> owner,
         OrtValuePtr value);

 private:
  int32_t dtype_;
  std::vector<int64_t> shape_;
  const void* data_;
  size_t nbytes_;
  std::shared_ptr<const void> owner_;
  mutable std::once_flag value_once_;
  mutable OrtValuePtr value_;
};

// An OrtValue over existing memory (CreateTensorWithDataAsOrtValue); memory must outlive it. Checks the dtype
// (INVALID_ARGUMENT), dims and nbytes == count * size (SHAPE_MISMATCH); data may be null when nbytes is 0.
OrtValuePtr make_ort_tensor(int32_t dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes);

// An int64 or int32 (`dtype`) OrtValue of `values` (ids, masks, positions a decoder takes in either width): the
// values are stored in keep64 or keep32, which must outlive the OrtValue.
OrtValuePtr make_index_tensor(const std::vector<int64_t>& values, const std::vector<int64_t>& shape, int32_t dtype,
                              std::vector<int64_t>& keep64, std::vector<int32_t>& keep32);

// ONNX dtype (TensorProto numbering) <-> ORT element type, for the dtypes multilora supports. The numbers are
// the same; these make the correspondence explicit. to_ort_element_type throws INVALID_ARGUMENT for an
// unsupported dtype; dtype_from_ort returns 0 for an element type multilora does not support (string,
// complex, float8, int4 ...).
ONNXTensorElementDataType to_ort_element_type(int32_t dtype);
int32_t dtype_from_ort(ONNXTensorElementDataType type) noexcept;

}  // namespace mlora
