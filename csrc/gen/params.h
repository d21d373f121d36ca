// GeneratorParams: search options and the active adapter set generators start with. Shared (reference-
// counted) between the ABI handle and every generator created from it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gen/genai_config.h"
#include "model/model.h"

namespace mlora {

class ActiveSet;
class BatchSet;

class GeneratorParams {
 public:
  // Throws INVALID_ARGUMENT if the model has no genai_config.json.
  explicit GeneratorParams(std::shared_ptr<const Model> model);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }
  const GenaiConfig& config() const noexcept { return *config_; }
  const SearchOptions& search() const noexcept { return search_; }
  const std::shared_ptr<const ActiveSet>& active() const noexcept { return active_; }
  // Per-sequence sets (adapter-aware batching); null unless set_per_row was called last.
  const std::shared_ptr<const BatchSet>& per_row() const noexcept { return per_row_; }

  // Options by name (see the Generation section of multilora.h). Throw INVALID_ARGUMENT naming the option
  // and the value: unknown name, non-integer for an integer option, value out of range.
  void set_number(const std::string& name, double value);
  void set_bool(const std::string& name, bool value);
  double get_number(const std::string& name) const;
  // Token ids that end a sequence (kept in it, like eos). Throws INVALID_ARGUMENT for an id outside the
  // vocabulary.
  void set_stop_tokens(const int32_t* tokens, size_t count);
  const std::vector<int32_t>& stop_tokens() const noexcept { return stop_tokens_; }

  // Null = base model. Throws INVALID_ARGUMENT when the set belongs to another model.
  void set_active(std::shared_ptr<const ActiveSet> active);
  // Replaces any single set. Throws INVALID_ARGUMENT when the sets belong to another model.
  void set_per_row(std::shared_ptr<const BatchSet> per_row);

 private:
  std::shared_ptr<const Model> model_;
  const GenaiConfig* config_;
  SearchOptions search_;
  std::shared_ptr<const ActiveSet> active_;
  std::shared_ptr<const BatchSet> per_row_;
  std::vector<int32_t> stop_tokens_;
};

// Checks that an active set (may be null) was resolved for `model`; throws INVALID_ARGUMENT naming both.
void check_active_model(const ActiveSet* active, const Model& model, const char* what);
// The same for per-row sets.
void check_per_row_model(const BatchSet* per_row, const Model& model, const char* what);

}  // namespace mlora
