// Header section "Run options".
#include "abi/abi.h"
#include "abi/active.h"

using namespace mlora;
using namespace mlora::abi;

namespace mlora::abi {

AdapterSelection single_selection(const mlora_adapters_t* adapters, const char* const* names, const float* weights,
                                  size_t count) {
  std::vector<std::string> n = str_array_arg(names, count, "names");
  if (count == 0) {
    if (adapters) hold(adapters, HandleType::kAdapters, "adapters");
    return AdapterSelection();  // the base model
  }
  const auto box = hold(adapters, HandleType::kAdapters, "adapters");
  std::vector<float> w(count, 1.0f);
  if (weights) w.assign(weights, weights + count);
  return AdapterSelection::single(resolve_single(box->resolver, n, w));
}

AdapterSelection per_row_selection(const mlora_adapters_t* adapters, const char* const* names, const float* weights,
                                   const size_t* row_counts, size_t batch_size) {
  const auto box = hold(adapters, HandleType::kAdapters, "adapters");
  if (batch_size == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "batch_size is 0");
  array_arg(row_counts, batch_size, "row_counts");
  size_t total = 0;
  for (size_t i = 0; i < batch_size; ++i) {
    if (row_counts[i] > (SIZE_MAX >> 4) - total) fail(MLORA_STATUS_INVALID_ARGUMENT, "row_counts overflow");
    total += row_counts[i];
  }
  std::vector<std::string> all = str_array_arg(names, total, "names");
  std::vector<std::vector<std::string>> rows(batch_size);
  std::vector<std::vector<float>> row_weights(batch_size);
  size_t at = 0;
  for (size_t i = 0; i < batch_size; ++i) {
    const size_t n = row_counts[i];
    rows[i].assign(all.begin() + at, all.begin() + at + n);
    row_weights[i].assign(n, 1.0f);
    if (weights) row_weights[i].assign(weights + at, weights + at + n);
    at += n;
  }
  return AdapterSelection::per_row(resolve_per_row(box->resolver, rows, row_weights));
}

}  // namespace mlora::abi

extern "C" {

MLORA_API mlora_status_t mlora_run_options_create(mlora_run_options_t** out_options) {
  return guard(__func__, [&] {
    out_arg(out_options, "out_options");
    emit(out_options, HandleType::kRunOptions);
  });
}

MLORA_API void mlora_run_options_release(mlora_run_options_t* options) { release(options, HandleType::kRunOptions); }

MLORA_API mlora_status_t mlora_run_options_set_active_adapters(mlora_run_options_t* options,
                                                               const mlora_adapters_t* adapters,
                                                               const char* const* names, const float* weights,
                                                               size_t count) {
  return guard(__func__, [&] {
    const auto o = hold(options, HandleType::kRunOptions, "options");
    o->selection.set(single_selection(adapters, names, weights, count));
  });
}

MLORA_API mlora_status_t mlora_run_options_set_active_adapters_per_row(mlora_run_options_t* options,
                                                                       const mlora_adapters_t* adapters,
                                                                       const char* const* names, const float* weights,
                                                                       const size_t* row_counts, size_t batch_size) {
  return guard(__func__, [&] {
    const auto o = hold(options, HandleType::kRunOptions, "options");
    o->selection.set(per_row_selection(adapters, names, weights, row_counts, batch_size));
  });
}

MLORA_API mlora_status_t mlora_run_options_active_count(const mlora_run_options_t* options, size_t* out_count) {
  return guard(__func__, [&] {
    const auto o = hold(options, HandleType::kRunOptions, "options");
    out_arg(out_count, "out_count");
    *out_count = o->selection.get().adapter_count();
  });
}

}  // extern "C"
