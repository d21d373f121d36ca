// Header section "Tensors": the element-type table (names and sizes) every binding reads instead of a copy.
#include "util/dtype.h"

#include "abi/abi.h"

using namespace mlora;
using namespace mlora::abi;

extern "C" {

MLORA_API const char* mlora_dtype_name(mlora_dtype_t dtype) {
  const char* name = dtype_cname(dtype);
  return name ? name : "unknown";
}

MLORA_API mlora_status_t mlora_dtype_size(mlora_dtype_t dtype, size_t* out_size) {
  return guard(__func__, [&] {
    out_arg(out_size, "out_size");
    const size_t size = dtype_size(dtype);
    if (size == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "dtype " + std::to_string(dtype) + " is no MLORA_DTYPE_*");
    *out_size = size;
  });
}

}  // extern "C"
