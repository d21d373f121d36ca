#include "gen/params.h"

#include <cmath>
#include <sstream>

#include "util/error.h"

namespace mlora {

namespace {

const char* const kKnownNames =
    "max_length, min_length, top_k, top_p, temperature, repetition_penalty, random_seed, batch_size, do_sample, "
    "max_new_tokens";

std::string num_str(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

[[noreturn]] void bad_value(const std::string& name, double value, const std::string& why) {
  fail(MLORA_STATUS_INVALID_ARGUMENT, "search option '" + name + "' = " + num_str(value) + ": " + why);
}

int64_t integral(const std::string& name, double value, double min, double max) {
  if (!std::isfinite(value) || std::floor(value) != value) bad_value(name, value, "must be an integer");
  if (value < min || value > max) bad_value(name, value, "must be in " + num_str(min) + ".." + num_str(max));
  return static_cast<int64_t>(value);
}

}  // namespace

GeneratorParams::GeneratorParams(std::shared_ptr<const Model> model) : model_(std::move(model)) {
  config_ = model_->genai_config();
  if (!config_) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "model '" + model_->path() + "' has no genai_config.json: generation needs a GenAI model folder");
  }
  search_ = config_->search;
}

SearchOptions GeneratorParams::search() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return search_;
}

void GeneratorParams::set_number(const std::string& name, double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  SearchOptions s = search_;
  if (name == "max_length") {
    s.max_length = static_cast<int32_t>(integral(name, value, 1, config_->context_length));
  } else if (name == "min_length") {
    s.min_length = static_cast<int32_t>(integral(name, value, 0, config_->context_length));
  } else if (name == "top_k") {
    s.top_k = static_cast<int32_t>(integral(name, value, 0, INT32_MAX));
  } else if (name == "top_p") {
    if (!(value > 0.0 && value <= 1.0)) bad_value(name, value, "must be in (0, 1]");
    s.top_p = value;
  } else if (name == "temperature") {
    if (!(std::isfinite(value) && value > 0.0)) bad_value(name, value, "must be a finite number > 0");
    s.temperature = value;
  } else if (name == "repetition_penalty") {
    if (!(std::isfinite(value) && value > 0.0)) bad_value(name, value, "must be a finite number > 0");
    s.repetition_penalty = value;
  } else if (name == "random_seed") {
    s.random_seed = integral(name, value, -1, 9007199254740992.0);  // -1 = from std::random_device
  } else if (name == "batch_size") {
    s.batch_size = static_cast<int32_t>(integral(name, value, 1, 65536));
  } else if (name == "max_new_tokens") {
    s.max_new_tokens = static_cast<int32_t>(integral(name, value, 0, config_->context_length));
  } else if (name == "do_sample") {
    if (value != 0.0 && value != 1.0) bad_value(name, value, "is a boolean (0 or 1)");
    s.do_sample = value != 0.0;
  } else {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "unknown search option '" + name + "' (known: " + kKnownNames + ")");
  }
  search_ = s;
}

void GeneratorParams::set_bool(const std::string& name, bool value) {
  if (name != "do_sample") {
    const bool numeric = name == "max_length" || name == "min_length" || name == "top_k" || name == "top_p" ||
                         name == "temperature" || name == "repetition_penalty" || name == "random_seed" ||
                         name == "batch_size" || name == "max_new_tokens";
    fail(MLORA_STATUS_INVALID_ARGUMENT, numeric ? "search option '" + name + "' is a number, not a boolean"
                                                : "unknown boolean search option '" + name + "' (known: do_sample)");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  search_.do_sample = value;
}

double GeneratorParams::get_number(const std::string& name) const {
  const SearchOptions s = search();
  if (name == "max_length") return s.max_length;
  if (name == "min_length") return s.min_length;
  if (name == "top_k") return s.top_k;
  if (name == "top_p") return s.top_p;
  if (name == "temperature") return s.temperature;
  if (name == "repetition_penalty") return s.repetition_penalty;
  if (name == "random_seed") return static_cast<double>(s.random_seed);
  if (name == "batch_size") return s.batch_size;
  if (name == "do_sample") return s.do_sample ? 1.0 : 0.0;
  if (name == "max_new_tokens") return s.max_new_tokens;
  fail(MLORA_STATUS_INVALID_ARGUMENT, "unknown search option '" + name + "' (known: " + kKnownNames + ")");
}

void GeneratorParams::set_stop_tokens(const int32_t* tokens, size_t count) {
  if (count && !tokens) fail(MLORA_STATUS_INVALID_ARGUMENT, "tokens is NULL but count is " + std::to_string(count));
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_->vocab_size) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "stop token " + std::to_string(tokens[i]) +
                                              " is outside the vocabulary (0.." +
                                              std::to_string(config_->vocab_size - 1) + ")");
    }
  }
  std::vector<int32_t> stop(tokens, tokens + count);
  std::lock_guard<std::mutex> lock(mutex_);
  stop_tokens_.swap(stop);
}

std::vector<int32_t> GeneratorParams::stop_tokens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stop_tokens_;
}

void GeneratorParams::set_selection(AdapterSelection selection, const char* who) {
  selection.check_model(*model_, who);
  selection_.set(std::move(selection));
}

}  // namespace mlora
