// Header section "Run options".
#include "abi/abi.h"
#include "abi/active.h"
#include "adapter/registry.h"
#include "run/active_set.h"
#include "run/batch_set.h"

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

std::shared_ptr<const BatchSet> resolve_per_row(const mlora_adapters_t* adapters, const char* const* names,
                                                const float* weights, const size_t* row_counts, size_t batch_size) {
  const Registry& r = *checked(adapters, HandleType::kAdapters, "adapters")->registry;
  if (batch_size == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "batch_size is 0");
  array_arg(row_counts, batch_size, "row_counts");
  size_t total = 0;
  for (size_t i = 0; i < batch_size; ++i) {
    if (row_counts[i] > (SIZE_MAX >> 4) - total) fail(MLORA_STATUS_INVALID_ARGUMENT, "row_counts overflow");
    total += row_counts[i];
  }
  std::vector<std::string> all = str_array_arg(names, total, "names");
  require_batching(*r.model());
  std::vector<std::shared_ptr<const ActiveSet>> rows(batch_size);
  size_t at = 0;
  for (size_t i = 0; i < batch_size; ++i) {
    const size_t n = row_counts[i];
    if (n) {
      std::vector<std::string> row_names(all.begin() + at, all.begin() + at + n);
      std::vector<float> w(n, 1.0f);
      if (weights) w.assign(weights + at, weights + at + n);
      try {
        rows[i] = r.resolve(row_names, w);  // cached: identical rows share one set
      } catch (const Error& e) {
        fail(e.status(), "row " + std::to_string(i) + ": " + e.what());
      }
    }
    at += n;
  }
  return BatchSet::build(r.model(), std::move(rows));
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
    options->per_row.reset();
  });
}

MLORA_API mlora_status_t mlora_run_options_set_active_adapters_per_row(mlora_run_options_t* options,
                                                                       const mlora_adapters_t* adapters,
                                                                       const char* const* names, const float* weights,
                                                                       const size_t* row_counts, size_t batch_size) {
  return guard(__func__, [&] {
    checked(options, HandleType::kRunOptions, "options");
    options->per_row = resolve_per_row(adapters, names, weights, row_counts, batch_size);
    options->active.reset();
  });
}

MLORA_API mlora_status_t mlora_run_options_active_count(const mlora_run_options_t* options, size_t* out_count) {
  return guard(__func__, [&] {
    checked(options, HandleType::kRunOptions, "options");
    out_arg(out_count, "out_count");
    *out_count = options->per_row  ? options->per_row->adapter_count()
                 : options->active ? options->active->entries().size()
                                   : 0;
  });
}

}  // extern "C"
