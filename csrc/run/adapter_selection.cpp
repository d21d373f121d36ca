#include "run/adapter_selection.h"

#include <set>

#include "adapter/registry.h"
#include "run/active_set.h"
#include "run/batch_set.h"
#include "util/error.h"

namespace mlora {

AdapterSelection AdapterSelection::single(std::shared_ptr<const ActiveSet> set) {
  AdapterSelection s;
  s.single_ = std::move(set);
  return s;
}

AdapterSelection AdapterSelection::per_row(std::shared_ptr<const BatchSet> sets) {
  AdapterSelection s;
  s.per_row_ = std::move(sets);
  return s;
}

size_t AdapterSelection::adapter_count() const noexcept {
  return per_row_ ? per_row_->adapter_count() : single_ ? single_->entries().size() : 0;
}

void AdapterSelection::check_model(const Model& model, const std::string& who) const {
  const Model* owner = per_row_ ? per_row_->model().get() : single_ ? single_->model().get() : nullptr;
  if (!owner || owner == &model) return;
  fail(MLORA_STATUS_INVALID_ARGUMENT, who + ": the adapters were loaded for model '" + owner->path() +
                                          "' (another model object), not for model '" + model.path() +
                                          "'; an adapters registry serves the model it was created with");
}

void AdapterSelection::check_batch_size(int64_t batch, const std::string& who) const {
  if (per_row_ && per_row_->batch_size() != batch) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, who + ": per-row adapters for " + std::to_string(per_row_->batch_size()) +
                                            " rows, but the batch_size is " + std::to_string(batch));
  }
}

const std::vector<const char*>& AdapterSelection::Feeds::names() const noexcept {
  static const std::vector<const char*> kNone;
  return lease_ ? lease_->feed_names() : single_ ? single_->feed_names() : kNone;
}

const std::vector<const OrtValue*>& AdapterSelection::Feeds::values() const noexcept {
  static const std::vector<const OrtValue*> kNone;
  return lease_ ? lease_->feed_values() : single_ ? single_->feed_values() : kNone;
}

AdapterSelection::Feeds AdapterSelection::feeds() const {
  Feeds f;
  if (per_row_) {
    f.per_row_ = per_row_;
    f.lease_ = per_row_->acquire();
  } else {
    f.single_ = single_;
  }
  return f;
}

std::shared_ptr<const ActiveSet> resolve_single(const Registry& registry, const std::vector<std::string>& names,
                                                const std::vector<float>& weights) {
  if (names.empty() && weights.empty()) return nullptr;  // the base model
  std::vector<float> w = weights;
  if (w.empty()) w.assign(names.size(), 1.0f);
  return registry.resolve(names, w);
}

std::shared_ptr<const BatchSet> resolve_per_row(const Registry& registry, std::shared_ptr<SlotTable> slots,
                                                const std::vector<std::vector<std::string>>& rows,
                                                const std::vector<std::vector<float>>& weights) {
  if (rows.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "batch_size is 0");
  require_batching(*registry.model());
  std::vector<std::shared_ptr<const ActiveSet>> sets(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].empty()) continue;
    try {
      // cached: identical rows share one set
      sets[i] = resolve_single(registry, rows[i], i < weights.size() ? weights[i] : std::vector<float>());
    } catch (const Error& e) {
      fail(e.status(), "row " + std::to_string(i) + ": " + e.what());
    }
  }
  return BatchSet::build(registry.model(), std::move(slots), std::move(sets));
}

}  // namespace mlora
