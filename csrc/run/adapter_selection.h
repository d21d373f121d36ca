// AdapterSelection: which adapters a run or a generation uses — nothing (the base model), one composed set
// for every row (ActiveSet), or one set per row (BatchSet, on a model prepared for adapter-aware batching).
// Setting one kind replaces the other. RunOptions (the ABI box), GeneratorParams and Generator all hold one,
// and so should any new consumer (e.g. the request engine):
//
//   AdapterSelection sel = AdapterSelection::single(resolve_single(resolver, names, weights));
//   sel.check_model(*model, "my consumer");                 // the one identity check, one message
//   AdapterSelection::Feeds feeds = sel.feeds();             // per-row: pins slots (may wait for them)
//   ... append feeds.names()/feeds.values() to the Run's inputs; keep `feeds` alive until Run returns.
//
// The value is immutable and cheap to copy (two shared_ptrs): copy it to take a snapshot. An object whose
// selection may be changed by one thread while others read it holds a SharedSelection (set/get under a
// mutex), so a reader always gets a whole selection and keeps what it uses alive.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"
#include "ort/ort.h"
#include "run/slot_table.h"

namespace mlora {

class ActiveSet;
class Adapter;
class BatchSet;
class Registry;

class AdapterSelection {
 public:
  AdapterSelection() = default;  // the base model
  // Null = the base model.
  static AdapterSelection single(std::shared_ptr<const ActiveSet> set);
  static AdapterSelection per_row(std::shared_ptr<const BatchSet> sets);

  // The single set (null unless one was selected).
  const std::shared_ptr<const ActiveSet>& single() const noexcept { return single_; }
  // The per-row sets (null unless they were selected).
  const std::shared_ptr<const BatchSet>& per_row() const noexcept { return per_row_; }
  bool is_base() const noexcept { return !single_ && !per_row_; }
  // Distinct adapters selected (over all rows).
  size_t adapter_count() const noexcept;

  // Throws INVALID_ARGUMENT when the sets were resolved for another model object than `model` (an adapters
  // registry serves the model it was created with); `who` starts the message.
  void check_model(const Model& model, const std::string& who) const;
  // Throws INVALID_ARGUMENT when per-row sets were made for another batch size than `batch`.
  void check_batch_size(int64_t batch, const std::string& who) const;

  // The LoRA feeds of one Run. For per-row sets it holds a slot-table lease: the slots stay pinned (and the
  // stacked storage alive) until the Feeds object is destroyed, so keep it until Run returns.
  class Feeds {
   public:
    const std::vector<const char*>& names() const noexcept;
    const std::vector<const OrtValue*>& values() const noexcept;

   private:
    friend class AdapterSelection;
    std::shared_ptr<const ActiveSet> single_;  // kept alive for the Run
    std::shared_ptr<const BatchSet> per_row_;  // keeps the slot table of the lease alive
    std::unique_ptr<SlotTable::Lease> lease_;
  };
  // Per-row sets: places them in the slot table (may wait for slots other runs pin). Throws as
  // SlotTable::acquire. No feeds at all when every row is on the base model (base_only()).
  Feeds feeds() const;
  // Nothing selected, or per-row sets with every row on the base model: runs need no LoRA feeds (and go to
  // the model's base graph when it has one).
  bool base_only() const noexcept;

 private:
  std::shared_ptr<const ActiveSet> single_;
  std::shared_ptr<const BatchSet> per_row_;
};

// A selection that one thread may replace while others take snapshots (run options, generator params).
class SharedSelection {
 public:
  AdapterSelection get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return selection_;
  }
  // The replaced selection is destroyed after the lock is dropped.
  void set(AdapterSelection selection) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::swap(selection_, selection);
    }
  }

 private:
  mutable std::mutex mutex_;
  AdapterSelection selection_;
};

// ---- resolving names into sets (the rules every binding follows) -----------------------------------------

// Composed sets by (adapter, weight) list: identical requests share one set while anyone holds it. One per
// adapters registry (the ABI keeps it beside the registry). Internally synchronized.
class SetCache {
 public:
  std::shared_ptr<const ActiveSet> find(const std::vector<std::pair<const Adapter*, float>>& key) const;
  // Stores `set` unless another thread stored an equal one meanwhile; returns the one to use.
  std::shared_ptr<const ActiveSet> put(const std::vector<std::pair<const Adapter*, float>>& key,
                                       std::shared_ptr<const ActiveSet> set);

 private:
  mutable std::mutex mutex_;
  std::map<std::vector<std::pair<const Adapter*, float>>, std::weak_ptr<const ActiveSet>> sets_;
};

// What resolving names needs: the registry, its cache of composed sets, and the model's slot table (null
// unless the model is prepared for adapter-aware batching).
struct Resolver {
  std::shared_ptr<Registry> registry;
  std::shared_ptr<SetCache> cache;
  std::shared_ptr<SlotTable> slots;
};

// Names (+ weights, same length; empty weights = all 1) -> one composed set of the registry's adapters as
// loaded now; no names -> null (the base model). Throws NOT_FOUND, INVALID_ARGUMENT (duplicate name,
// non-finite weight, counts differ).
std::shared_ptr<const ActiveSet> resolve_single(const Resolver& resolver, const std::vector<std::string>& names,
                                                const std::vector<float>& weights);

// One row of names (+ weights) per batch row; an empty row is the base model. Throws INVALID_ARGUMENT (model
// not prepared for batching, batch 0, more distinct sets than the slot table holds), NOT_FOUND naming the row.
std::shared_ptr<const BatchSet> resolve_per_row(const Resolver& resolver,
                                                const std::vector<std::vector<std::string>>& rows,
                                                const std::vector<std::vector<float>>& weights);

}  // namespace mlora
