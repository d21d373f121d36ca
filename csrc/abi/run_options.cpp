// Header section "Run options".
#include "abi/abi.h"
#include "abi/active.h"
#include "adapter/registry.h"
#include "run/active_set.h"

using namespace mlora;
using namespace mlora::abi;

namespace mlora::abi {

std::shared_ptr<const ActiveSet> resolve_active(const mlora_adapters_t* adapters, const char* const* names,
                                                const float* weights, size_t count) {
  std::vector<std::string> n = str_array_arg(names, count, "names");
  if (count == 0) {
    if (adapters) checked(adapters, HandleType::kAdapters, "adapters");
    return nullptr;  // base model
  }
  const Registry& r = *checked(adapters, HandleType::kAdapters, "adapters")->registry;
  std::vector<float> w(count, 1.0f);
  if (weights) w.assign(weights, weights + count);
  return r.resolve(n, w);
}

}  // namespace mlora::abi

extern "C" {

MLORA_API mlora_status_t mlora_run_options_create(mlora_run_options_t** out_options) {
  return guard(__func__, [&] {
    out_arg(out_options, "out_options");
    emit(out_options, HandleType::kRunOptions, nullptr);
  });
}

MLORA_API void mlora_run_options_release(mlora_run_options_t* options) { release(options, HandleType::kRunOptions); }

MLORA_API mlora_status_t mlora_run_options_set_active_adapters(mlora_run_options_t* options,
                                                               const mlora_adapters_t* adapters,
                                                               const char* const* names, const float* weights,
                                                               size_t count) {
  return guard(__func__, [&] {
    checked(options, HandleType::kRunOptions, "options");
    options->active = resolve_active(adapters, names, weights, count);
  });
}

MLORA_API mlora_status_t mlora_run_options_active_count(const mlora_run_options_t* options, size_t* out_count) {
  return guard(__func__, [&] {
    checked(options, HandleType::kRunOptions, "options");
    out_arg(out_count, "out_count");
    *out_count = options->active ? options->active->entries().size() : 0;
  });
}

}  // extern "C"
