// Header section "Tensors".
#include "model/tensor.h"

#include "abi/abi.h"

using namespace mlora;
using namespace mlora::abi;

namespace {
std::vector<int64_t> shape_arg(const int64_t* shape, size_t ndim) {
  array_arg(shape, ndim, "shape");
  return std::vector<int64_t>(shape, shape + ndim);
}
}  // namespace

extern "C" {

MLORA_API mlora_status_t mlora_tensor_create(mlora_dtype_t dtype, const int64_t* shape, size_t ndim, const void* data,
                                             size_t data_bytes, mlora_tensor_t** out_tensor) {
  return guard(__func__, [&] {
    out_arg(out_tensor, "out_tensor");
    array_arg(data, data_bytes, "data");
    emit(out_tensor, HandleType::kTensor, Tensor::copy_of(dtype, shape_arg(shape, ndim), data, data_bytes));
  });
}

MLORA_API mlora_status_t mlora_tensor_create_borrowed(mlora_dtype_t dtype, const int64_t* shape, size_t ndim,
                                                      const void* data, size_t data_bytes,
                                                      mlora_tensor_t** out_tensor) {
  return guard(__func__, [&] {
    out_arg(out_tensor, "out_tensor");
    array_arg(data, data_bytes, "data");
    emit(out_tensor, HandleType::kTensor, Tensor::view(dtype, shape_arg(shape, ndim), data, data_bytes, nullptr));
  });
}

MLORA_API void mlora_tensor_release(mlora_tensor_t* tensor) { release(tensor, HandleType::kTensor); }

MLORA_API mlora_status_t mlora_tensor_dtype(const mlora_tensor_t* tensor, mlora_dtype_t* out_dtype) {
  return guard(__func__, [&] {
    const auto t = hold(tensor, HandleType::kTensor, "tensor")->tensor;
    out_arg(out_dtype, "out_dtype");
    *out_dtype = t->dtype();
  });
}

MLORA_API mlora_status_t mlora_tensor_shape(const mlora_tensor_t* tensor, int64_t* shape_buf, size_t capacity,
                                            size_t* out_ndim) {
  return guard(__func__, [&] {
    const auto t = hold(tensor, HandleType::kTensor, "tensor")->tensor;
    out_arg(out_ndim, "out_ndim");
    const auto& shape = t->shape();
    *out_ndim = shape.size();
    if (capacity < shape.size()) {
      fail(MLORA_STATUS_BUFFER_TOO_SMALL, "shape buffer of " + std::to_string(capacity) +
                                              " dims is too small for rank " + std::to_string(shape.size()));
    }
    array_arg(shape_buf, shape.size(), "shape_buf");
    for (size_t i = 0; i < shape.size(); ++i) shape_buf[i] = shape[i];
  });
}

MLORA_API mlora_status_t mlora_tensor_data(const mlora_tensor_t* tensor, const void** out_data, size_t* out_bytes) {
  return guard(__func__, [&] {
    const auto t = hold(tensor, HandleType::kTensor, "tensor")->tensor;
    out_arg(out_data, "out_data");
    out_arg(out_bytes, "out_bytes");
    *out_data = t->data();
    *out_bytes = t->nbytes();
  });
}

}  // extern "C"
