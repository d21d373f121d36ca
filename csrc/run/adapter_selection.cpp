#include "run/adapter_selection.h"

#include <cmath>
#include <set>

#include "adapter/registry.h"
#include "run/active_set.h"
#include "run/batch_set.h"
#include "util/error.h"

namespace mlora {

namespace {
constexpr float kMaxAdapterWeight = 1e6f;
}  // namespace

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

bool AdapterSelection::base_only() const noexcept { return per_row_ ? per_row_->all_base() : !single_; }

AdapterSelection::Feeds AdapterSelection::feeds() const {
  Feeds f;
  if (per_row_ && per_row_->all_base()) return f;  // lora_slot's default [0] is the base for every row
  if (per_row_) {
    f.per_row_ = per_row_;
    f.lease_ = per_row_->acquire();
  } else {
    f.single_ = single_;
  }
  return f;
}

std::shared_ptr<const ActiveSet> SetCache::find(const std::vector<std::pair<const Adapter*, float>>& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = sets_.find(key);
  return it == sets_.end() ? nullptr : it->second.lock();
}

std::shared_ptr<const ActiveSet> SetCache::put(const std::vector<std::pair<const Adapter*, float>>& key,
                                               std::shared_ptr<const ActiveSet> set) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = sets_.begin(); it != sets_.end();) {  // drop sets nobody holds any more
    it = it->second.expired() ? sets_.erase(it) : std::next(it);
  }
  auto& slot = sets_[key];
  if (auto existing = slot.lock()) return existing;  // another thread built the same set meanwhile
  slot = set;
  return set;
}

std::shared_ptr<const ActiveSet> resolve_single(const Resolver& resolver, const std::vector<std::string>& names,
                                                const std::vector<float>& given_weights) {
  if (names.empty() && given_weights.empty()) return nullptr;  // the base model
  std::vector<float> weights = given_weights;
  if (weights.empty()) weights.assign(names.size(), 1.0f);
  if (names.size() != weights.size()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         std::to_string(names.size()) + " adapter names but " + std::to_string(weights.size()) + " weights");
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (!std::isfinite(weights[i])) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "weight of adapter '" + names[i] + "' is not finite");
    }
    // A bound instead of silent all-NaN outputs: x·A·(w·B) overflows the activations long before float32's
    // range for weights like 3.4e38 or 2^70. No mix needs more; the composition also refuses any weight
    // that overflows the LoRA dtype itself (float16: 65504).
    if (std::fabs(weights[i]) > kMaxAdapterWeight) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "weight " + std::to_string(weights[i]) + " of adapter '" + names[i] +
                                              "' is outside -1e6..1e6 (larger weights overflow the model's "
                                              "activations)");
    }
  }
  const Registry& registry = *resolver.registry;
  std::vector<std::shared_ptr<const Adapter>> adapters = registry.lookup(names);  // one consistent snapshot
  std::vector<std::pair<const Adapter*, float>> key;
  std::vector<ActiveEntry> entries;
  for (size_t i = 0; i < names.size(); ++i) {
    key.emplace_back(adapters[i].get(), weights[i]);
    entries.push_back({names[i], std::move(adapters[i]), weights[i]});
  }
  if (auto cached = resolver.cache->find(key)) return cached;
  // Built outside every lock: composites can take a while and must not block loads.
  return resolver.cache->put(key, ActiveSet::build(registry.model(), std::move(entries)));
}

std::shared_ptr<const BatchSet> resolve_per_row(const Resolver& resolver,
                                                const std::vector<std::vector<std::string>>& rows,
                                                const std::vector<std::vector<float>>& weights) {
  if (rows.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "batch_size is 0");
  require_batching(*resolver.registry->model());
  std::vector<std::shared_ptr<const ActiveSet>> sets(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].empty()) continue;
    try {
      // cached: identical rows share one set
      sets[i] = resolve_single(resolver, rows[i], i < weights.size() ? weights[i] : std::vector<float>());
    } catch (const Error& e) {
      fail(e.status(), "row " + std::to_string(i) + ": " + e.what());
    }
  }
  return BatchSet::build(resolver.registry->model(), resolver.slots, std::move(sets));
}

}  // namespace mlora
