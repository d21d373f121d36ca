// Header section "Adapter files".
#include <set>

#include "abi/abi.h"
#include "adapter/adapter.h"
#include "model/tensor.h"

using namespace mlora;
using namespace mlora::abi;

namespace {
std::shared_ptr<const Adapter> adapter_of(const mlora_adapter_t* a) {
  return hold(a, HandleType::kAdapter, "adapter")->adapter;
}
}  // namespace

extern "C" {

MLORA_API mlora_status_t mlora_adapter_open(const char* path, mlora_adapter_t** out_adapter) {
  return guard(__func__, [&] {
    out_arg(out_adapter, "out_adapter");
    emit(out_adapter, HandleType::kAdapter, Adapter::open_file(str_arg(path, "path")));
  });
}

MLORA_API mlora_status_t mlora_adapter_open_from_memory(const void* data, size_t size, mlora_adapter_t** out_adapter) {
  return guard(__func__, [&] {
    out_arg(out_adapter, "out_adapter");
    array_arg(data, size, "data");
    emit(out_adapter, HandleType::kAdapter, Adapter::open_memory(data, size, "<memory>"));
  });
}

MLORA_API void mlora_adapter_release(mlora_adapter_t* adapter) { release(adapter, HandleType::kAdapter); }

MLORA_API mlora_status_t mlora_adapter_versions(const mlora_adapter_t* adapter, int32_t* out_format_version,
                                                int32_t* out_adapter_version, int32_t* out_model_version) {
  return guard(__func__, [&] {
    const auto held = adapter_of(adapter);
    const Adapter& a = *held;
    if (out_format_version) *out_format_version = a.format_version();
    if (out_adapter_version) *out_adapter_version = a.adapter_version();
    if (out_model_version) *out_model_version = a.model_version();
  });
}

MLORA_API mlora_status_t mlora_adapter_bytes(const mlora_adapter_t* adapter, uint64_t* out_bytes_mapped,
                                             uint64_t* out_bytes_copied) {
  return guard(__func__, [&] {
    const auto held = adapter_of(adapter);
    const Adapter& a = *held;
    if (out_bytes_mapped) *out_bytes_mapped = a.bytes_mapped();
    if (out_bytes_copied) *out_bytes_copied = a.bytes_copied();
  });
}

MLORA_API mlora_status_t mlora_adapter_rank(const mlora_adapter_t* adapter, int64_t* out_rank) {
  return guard(__func__, [&] {
    const auto held = adapter_of(adapter);
    const Adapter& a = *held;
    out_arg(out_rank, "out_rank");
    *out_rank = a.rank();
  });
}

MLORA_API mlora_status_t mlora_adapter_param_count(const mlora_adapter_t* adapter, size_t* out_count) {
  return guard(__func__, [&] {
    const auto held = adapter_of(adapter);
    const Adapter& a = *held;
    out_arg(out_count, "out_count");
    *out_count = a.params().size();
  });
}

MLORA_API mlora_status_t mlora_adapter_param_name(const mlora_adapter_t* adapter, size_t index, char* buf,
                                                  size_t capacity, size_t* out_len) {
  return guard(__func__, [&] {
    const auto held = adapter_of(adapter);
    const Adapter& a = *held;
    index_arg(index, a.params().size(), "parameter");
    write_string(std::string(a.params()[index].name), buf, capacity, out_len, "the parameter name");
  });
}

MLORA_API mlora_status_t mlora_adapter_param_tensor(const mlora_adapter_t* adapter, size_t index,
                                                    mlora_tensor_t** out_tensor) {
  return guard(__func__, [&] {
    const auto holder = adapter_of(adapter);
    index_arg(index, holder->params().size(), "parameter");
    out_arg(out_tensor, "out_tensor");
    const Param& p = holder->params()[index];
    emit(out_tensor, HandleType::kTensor,
         Tensor::view(p.dtype, p.dims.vec(), p.data, p.nbytes, std::shared_ptr<const void>(holder, holder.get())));
  });
}

MLORA_API mlora_status_t mlora_adapter_write(const char* path, const char* const* names,
                                             const mlora_tensor_t* const* tensors, size_t count,
                                             int32_t adapter_version, int32_t model_version) {
  return guard(__func__, [&] {
    const std::string p = str_arg(path, "path");
    std::vector<std::string> n = str_array_arg(names, count, "names");
    array_arg(tensors, count, "tensors");
    std::vector<ParamView> views;
    std::vector<std::shared_ptr<const Tensor>> keep;  // the tensors stay alive while they are written
    std::set<std::string> seen;
    for (size_t i = 0; i < count; ++i) {
      const std::string what = "tensors[" + std::to_string(i) + "] ('" + n[i] + "')";
      keep.push_back(hold(tensors[i], HandleType::kTensor, what.c_str())->tensor);
      const Tensor& t = *keep.back();
      if (n[i].empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "names[" + std::to_string(i) + "] is empty");
      if (!seen.insert(n[i]).second)
        fail(MLORA_STATUS_INVALID_ARGUMENT, "parameter name '" + n[i] + "' is given twice");
      views.push_back({n[i], t.dtype(), t.shape(), t.data(), t.nbytes()});
    }
    write_adapter_file(p, views, adapter_version, model_version);
  });
}

}  // extern "C"
