// GeneratorParams: search options and the adapter selection generators start with. Shared (reference-
// counted) between the ABI handle and every generator created from it. Internally synchronized: setters and
// readers may race; a generator takes a snapshot (search(), selection()) when it is created.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gen/genai_config.h"
#include "model/model.h"
#include "run/adapter_selection.h"

namespace mlora {

class GeneratorParams {
 public:
  // Throws INVALID_ARGUMENT if the model has no genai_config.json.
  explicit GeneratorParams(std::shared_ptr<const Model> model);

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }
  const GenaiConfig& config() const noexcept { return *config_; }
  // Snapshots (copies taken under the lock).
  SearchOptions search() const;
  AdapterSelection selection() const { return selection_.get(); }

  // Options by name (see the Generation section of multilora.h). Throw INVALID_ARGUMENT naming the option
  // and the value: unknown name, non-integer for an integer option, value out of range.
  void set_number(const std::string& name, double value);
  void set_bool(const std::string& name, bool value);
  double get_number(const std::string& name) const;
  // Token ids that end a sequence (kept in it, like eos). Throws INVALID_ARGUMENT for an id outside the
  // vocabulary.
  void set_stop_tokens(const int32_t* tokens, size_t count);
  std::vector<int32_t> stop_tokens() const;  // a snapshot

  // Replaces the selection. Throws INVALID_ARGUMENT when the sets belong to another model.
  void set_selection(AdapterSelection selection, const char* who);

 private:
  std::shared_ptr<const Model> model_;
  const GenaiConfig* config_;
  mutable std::mutex mutex_;  // guards search_, stop_tokens_
  SearchOptions search_;
  SharedSelection selection_;
  std::vector<int32_t> stop_tokens_;
};

}  // namespace mlora
