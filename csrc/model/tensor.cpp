#include "model/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

// ONNX TensorProto numbers and ORT's element enum agree for every dtype we support; keep it checked.
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT == MLORA_DTYPE_FLOAT32, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 == MLORA_DTYPE_UINT8, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 == MLORA_DTYPE_INT8, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16 == MLORA_DTYPE_UINT16, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 == MLORA_DTYPE_INT16, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 == MLORA_DTYPE_INT32, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 == MLORA_DTYPE_INT64, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL == MLORA_DTYPE_BOOL, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 == MLORA_DTYPE_FLOAT16, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE == MLORA_DTYPE_FLOAT64, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32 == MLORA_DTYPE_UINT32, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64 == MLORA_DTYPE_UINT64, "dtype numbering");
static_assert(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 == MLORA_DTYPE_BFLOAT16, "dtype numbering");

constexpr size_t kCopyAlignment = 64;

// Stands in for the data pointer of an empty tensor (ORT wants a non-null pointer for a tensor over user
// memory); nothing is ever read from or written to it.
alignas(kCopyAlignment) unsigned char g_empty_tensor_data[kCopyAlignment];

// Validates dtype, dims and byte size; returns the expected byte size.
size_t checked_nbytes(int32_t dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes,
                      const char* what) {
  check_dtype(dtype, what);
  for (int64_t d : shape) {
    if (d < 0) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           std::string(what) + ": negative dimension " + std::to_string(d) + " in shape " + shape_str(shape));
    }
  }
  const size_t count = element_count(shape, what);
  const size_t esize = dtype_size(dtype);
  size_t expected = 0;
  if (__builtin_mul_overflow(count, esize, &expected)) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, std::string(what) + ": byte size of shape " + shape_str(shape) + " overflows");
  }
  if (nbytes != expected) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, std::string(what) + ": " + dtype_name(dtype) + " " + shape_str(shape) +
                                          " needs " + std::to_string(expected) + " bytes, got " +
                                          std::to_string(nbytes));
  }
  if (!data && nbytes != 0) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         std::string(what) + ": data is NULL but " + std::to_string(nbytes) + " bytes are needed");
  }
  return expected;
}

}  // namespace

ONNXTensorElementDataType to_ort_element_type(int32_t dtype) {
  check_dtype(dtype, "tensor");
  return static_cast<ONNXTensorElementDataType>(dtype);
}

int32_t dtype_from_ort(ONNXTensorElementDataType type) noexcept {
  const auto dtype = static_cast<int32_t>(type);
  return dtype_size(dtype) != 0 ? dtype : 0;
}

Tensor::Tensor(int32_t dtype, std::vector<int64_t> shape, const void* data, size_t nbytes,
               std::shared_ptr<const void> owner, OrtValuePtr value)
    : dtype_(dtype),
      shape_(std::move(shape)),
      data_(data),
      nbytes_(nbytes),
      owner_(std::move(owner)),
      value_(std::move(value)) {}

std::shared_ptr<const Tensor> Tensor::copy_of(int32_t dtype, std::vector<int64_t> shape, const void* data,
                                              size_t nbytes) {
  checked_nbytes(dtype, shape, data, nbytes, "tensor");
  // aligned_alloc wants a size that is a multiple of the alignment; an empty tensor still gets a buffer.
  const size_t alloc = nbytes == 0 ? kCopyAlignment : (nbytes + kCopyAlignment - 1) / kCopyAlignment * kCopyAlignment;
  if (alloc < nbytes) fail(MLORA_STATUS_OUT_OF_MEMORY, "tensor of " + std::to_string(nbytes) + " bytes is too large");
  void* buffer = std::aligned_alloc(kCopyAlignment, alloc);
  if (!buffer) throw std::bad_alloc();
  std::shared_ptr<const void> owner(buffer, [](const void* p) { std::free(const_cast<void*>(p)); });
  if (nbytes) std::memcpy(buffer, data, nbytes);
  return std::make_shared<const Tensor>(dtype, std::move(shape), buffer, nbytes, std::move(owner), nullptr);
}

std::shared_ptr<const Tensor> Tensor::view(int32_t dtype, std::vector<int64_t> shape, const void* data, size_t nbytes,
                                           std::shared_ptr<const void> owner) {
  checked_nbytes(dtype, shape, data, nbytes, "tensor");
  const size_t esize = dtype_size(dtype);
  if (data && reinterpret_cast<uintptr_t>(data) % esize != 0) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "tensor: " + dtype_name(dtype) + " data at address " +
                                            std::to_string(reinterpret_cast<uintptr_t>(data)) +
                                            " is not aligned to its element size " + std::to_string(esize));
  }
  return std::make_shared<const Tensor>(dtype, std::move(shape), data, nbytes, std::move(owner), nullptr);
}

std::shared_ptr<const Tensor> Tensor::from_ort(OrtValuePtr value) {
  if (!value) fail(MLORA_STATUS_INTERNAL, "Tensor::from_ort: null value");
  const OrtApi& api = ort();
  int is_tensor = 0;
  ort_check(api.IsTensor(value.get(), &is_tensor), "inspecting an ONNX Runtime value");
  if (!is_tensor)
    fail(MLORA_STATUS_TYPE_MISMATCH, "the ONNX Runtime value is not a tensor (sequence, map or optional)");

  OrtTensorTypeAndShapeInfo* raw_info = nullptr;
  ort_check(api.GetTensorTypeAndShape(value.get(), &raw_info), "reading a tensor's type and shape");
  OrtTensorTypeAndShapeInfoPtr info(raw_info);
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ort_check(api.GetTensorElementType(info.get(), &type), "reading a tensor's element type");
  const int32_t dtype = dtype_from_ort(type);
  if (dtype == 0) {
    fail(MLORA_STATUS_TYPE_MISMATCH, "tensor element type " + dtype_name(static_cast<int32_t>(type)) +
                                         (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING ? " (string)" : "") +
                                         " is not supported by multilora");
  }
  size_t rank = 0;
  ort_check(api.GetDimensionsCount(info.get(), &rank), "reading a tensor's rank");
  std::vector<int64_t> shape(rank);
  if (rank) ort_check(api.GetDimensions(info.get(), shape.data(), rank), "reading a tensor's shape");
  const size_t nbytes = element_count(shape, "tensor") * dtype_size(dtype);

  void* data = nullptr;
  ort_check(api.GetTensorMutableData(value.get(), &data), "reading a tensor's data");
  if (!data && nbytes) fail(MLORA_STATUS_RUNTIME, "ONNX Runtime returned a tensor without data");
  return std::make_shared<const Tensor>(dtype, std::move(shape), data, nbytes, nullptr, std::move(value));
}

const OrtValue* Tensor::ort_value() const {
  std::call_once(value_once_, [this] {
    if (!value_) value_ = make_ort_tensor(dtype_, shape_, data_, nbytes_);
  });
  return value_.get();
}

OrtValuePtr make_index_tensor(const std::vector<int64_t>& values, const std::vector<int64_t>& shape, int32_t dtype,
                              std::vector<int64_t>& keep64, std::vector<int32_t>& keep32) {
  if (dtype == MLORA_DTYPE_INT64) {
    keep64 = values;
    return make_ort_tensor(dtype, shape, keep64.data(), keep64.size() * sizeof(int64_t));
  }
  keep32.assign(values.begin(), values.end());
  return make_ort_tensor(dtype, shape, keep32.data(), keep32.size() * sizeof(int32_t));
}

OrtValuePtr make_ort_tensor(int32_t dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  checked_nbytes(dtype, shape, data, nbytes, "tensor");
  const OrtApi& api = ort();
  // ORT never writes through an input's memory; the const_cast only satisfies the C signature.
  void* p = data ? const_cast<void*>(data) : static_cast<void*>(g_empty_tensor_data);
  OrtValue* value = nullptr;
  ort_check(api.CreateTensorWithDataAsOrtValue(ort_cpu_memory(), p, nbytes, shape.data(), shape.size(),
                                               to_ort_element_type(dtype), &value),
            "creating a " + dtype_name(dtype) + " tensor of shape " + shape_str(shape));
  return OrtValuePtr(value);
}

}  // namespace mlora
