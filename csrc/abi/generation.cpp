// Header section "Generation".
#include <cstring>

#include "abi/abi.h"
#include "abi/active.h"
#include "gen/generator.h"
#include "gen/params.h"
#include "model/model.h"
#include "model/tensor.h"

// Handle boxes of this section (see abi.h for the others). Params are shared: generators hold the same
// object, so releasing the handle only drops one reference; they are internally synchronized. A generator
// is not: every call on it goes through its gate, which refuses overlapping calls with BUSY.
struct mlora_generator_params {
  std::shared_ptr<mlora::GeneratorParams> params;
};
struct mlora_generator {
  std::shared_ptr<mlora::Generator> generator;
  mlora::abi::OneAtATime gate;
};

using namespace mlora;
using namespace mlora::abi;

namespace {

// The params behind a handle, held for the call.
std::shared_ptr<GeneratorParams> params_of(const mlora_generator_params_t* p) {
  return hold(p, HandleType::kGeneratorParams, "params")->params;
}

// A generator held for the call, used by this call alone (changing) or with other reading calls: an
// overlapping call gets BUSY.
struct GeneratorUse {
  std::shared_ptr<mlora_generator_t> box;
  OneAtATime::Use use;
  Generator& operator*() const noexcept { return *box->generator; }
  Generator* operator->() const noexcept { return box->generator.get(); }
};

GeneratorUse changing(const mlora_generator_t* g, const char* fn) {
  auto box = hold(const_cast<mlora_generator_t*>(g), HandleType::kGenerator, "generator");
  OneAtATime::Use use = box->gate.exclusive(fn, "generator");
  return GeneratorUse{std::move(box), std::move(use)};
}

GeneratorUse reading(const mlora_generator_t* g, const char* fn) {
  auto box = hold(const_cast<mlora_generator_t*>(g), HandleType::kGenerator, "generator");
  OneAtATime::Use use = box->gate.shared(fn, "generator");
  return GeneratorUse{std::move(box), std::move(use)};
}

// Copies `values` into a caller buffer of `capacity` ints; *out_len is the count needed in every case.
void write_ints(const std::vector<int32_t>& values, int32_t* buf, size_t capacity, size_t* out_len, const char* what) {
  out_arg(out_len, "out_len");
  *out_len = values.size();
  if (capacity < values.size()) {
    fail(MLORA_STATUS_BUFFER_TOO_SMALL, "buffer of " + std::to_string(capacity) + " tokens is too small for " + what +
                                            " (needs " + std::to_string(values.size()) + ")");
  }
  if (values.empty()) return;
  if (!buf) fail(MLORA_STATUS_INVALID_ARGUMENT, "buf is NULL but capacity is " + std::to_string(capacity));
  std::memcpy(buf, values.data(), values.size() * sizeof(int32_t));
}

}  // namespace

namespace mlora::abi {
std::shared_ptr<const GeneratorParams> params_ref(const mlora_generator_params_t* params) { return params_of(params); }
}  // namespace mlora::abi

extern "C" {

MLORA_API mlora_status_t mlora_generator_params_create(const mlora_model_t* model,
                                                       mlora_generator_params_t** out_params) {
  return guard(__func__, [&] {
    const auto m = hold(model, HandleType::kModel, "model")->model;
    out_arg(out_params, "out_params");
    emit(out_params, HandleType::kGeneratorParams, std::make_shared<GeneratorParams>(m));
  });
}

MLORA_API void mlora_generator_params_release(mlora_generator_params_t* params) {
  release(params, HandleType::kGeneratorParams);
}

MLORA_API mlora_status_t mlora_generator_params_set_search_number(mlora_generator_params_t* params, const char* name,
                                                                  double value) {
  return guard(__func__, [&] { params_of(params)->set_number(str_arg(name, "name"), value); });
}

MLORA_API mlora_status_t mlora_generator_params_set_search_bool(mlora_generator_params_t* params, const char* name,
                                                                int32_t value) {
  return guard(__func__, [&] {
    const auto p = params_of(params);
    const std::string n = str_arg(name, "name");
    if (value != 0 && value != 1) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           "search option '" + n + "': boolean value " + std::to_string(value) + " is not 0 or 1");
    }
    p->set_bool(n, value != 0);
  });
}

MLORA_API mlora_status_t mlora_generator_params_get_search_number(const mlora_generator_params_t* params,
                                                                  const char* name, double* out_value) {
  return guard(__func__, [&] {
    const auto p = params_of(params);
    const std::string n = str_arg(name, "name");
    out_arg(out_value, "out_value");
    *out_value = p->get_number(n);
  });
}

MLORA_API mlora_status_t mlora_generator_params_set_active_adapters(mlora_generator_params_t* params,
                                                                    const mlora_adapters_t* adapters,
                                                                    const char* const* names, const float* weights,
                                                                    size_t count) {
  return guard(__func__, [&] {
    const auto p = params_of(params);
    p->set_selection(single_selection(adapters, names, weights, count), "set_active_adapters");
  });
}

MLORA_API mlora_status_t mlora_generator_params_set_active_adapters_per_row(
    mlora_generator_params_t* params, const mlora_adapters_t* adapters, const char* const* names, const float* weights,
    const size_t* row_counts, size_t batch_size) {
  return guard(__func__, [&] {
    const auto p = params_of(params);
    p->set_selection(per_row_selection(adapters, names, weights, row_counts, batch_size),
                     "set_active_adapters_per_row");
  });
}

MLORA_API mlora_status_t mlora_generator_create(const mlora_model_t* model, const mlora_generator_params_t* params,
                                                mlora_generator_t** out_generator) {
  return guard(__func__, [&] {
    const auto m = hold(model, HandleType::kModel, "model")->model;
    const auto p = params_of(params);
    out_arg(out_generator, "out_generator");
    if (!m->genai_config()) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           "model '" + m->path() + "' has no genai_config.json: generation needs a GenAI model folder");
    }
    auto box = std::make_shared<mlora_generator_t>();  // not emit(): the gate is neither copyable nor movable
    box->generator = std::make_shared<Generator>(m, p);
    mlora_generator_t* raw = box.get();
    register_handle(raw, HandleType::kGenerator, std::move(box));
    *out_generator = raw;
  });
}

MLORA_API void mlora_generator_release(mlora_generator_t* generator) { release(generator, HandleType::kGenerator); }

MLORA_API mlora_status_t mlora_generator_append_tokens(mlora_generator_t* generator, const int32_t* tokens,
                                                       size_t count) {
  return guard(__func__, [&] {
    const auto g = changing(generator, "mlora_generator_append_tokens");
    array_arg(tokens, count, "tokens");
    g->append_tokens(tokens, count);
  });
}

MLORA_API mlora_status_t mlora_generator_append_token_sequences(mlora_generator_t* generator, const int32_t* tokens,
                                                                const size_t* lengths, size_t batch_size) {
  return guard(__func__, [&] {
    const auto g = changing(generator, "mlora_generator_append_token_sequences");
    array_arg(lengths, batch_size, "lengths");
    size_t total = 0;
    for (size_t i = 0; i < batch_size; ++i) total += lengths[i];
    array_arg(tokens, total, "tokens");
    g->append_token_sequences(tokens, lengths, batch_size);
  });
}

MLORA_API mlora_status_t mlora_generator_generate_next_token(mlora_generator_t* generator) {
  return guard(__func__, [&] { changing(generator, "mlora_generator_generate_next_token")->generate_next_token(); });
}

MLORA_API mlora_status_t mlora_generator_is_done(const mlora_generator_t* generator, int32_t* out_done) {
  return guard(__func__, [&] {
    const auto g = reading(generator, "mlora_generator_is_done");
    out_arg(out_done, "out_done");
    *out_done = g->is_done() ? 1 : 0;
  });
}

MLORA_API mlora_status_t mlora_generator_batch_size(const mlora_generator_t* generator, size_t* out_batch_size) {
  return guard(__func__, [&] {
    const auto g = reading(generator, "mlora_generator_batch_size");
    out_arg(out_batch_size, "out_batch_size");
    *out_batch_size = g->batch_size();
  });
}

MLORA_API mlora_status_t mlora_generator_get_sequence(const mlora_generator_t* generator, size_t index, int32_t* buf,
                                                      size_t capacity, size_t* out_len) {
  return guard(__func__, [&] {
    const auto g = reading(generator, "mlora_generator_get_sequence");
    write_ints(g->sequence(index), buf, capacity, out_len, "the sequence");
  });
}

MLORA_API mlora_status_t mlora_generator_get_next_tokens(const mlora_generator_t* generator, int32_t* buf,
                                                         size_t capacity, size_t* out_len) {
  return guard(__func__, [&] {
    const auto g = reading(generator, "mlora_generator_get_next_tokens");
    write_ints(g->next_tokens(), buf, capacity, out_len, "the next tokens");
  });
}

MLORA_API mlora_status_t mlora_generator_get_logits(const mlora_generator_t* generator, mlora_tensor_t** out_tensor) {
  return guard(__func__, [&] {
    const auto g = reading(generator, "mlora_generator_get_logits");
    out_arg(out_tensor, "out_tensor");
    emit(out_tensor, HandleType::kTensor, g->logits());
  });
}

MLORA_API mlora_status_t mlora_generator_set_active_adapters(mlora_generator_t* generator,
                                                             const mlora_adapters_t* adapters, const char* const* names,
                                                             const float* weights, size_t count) {
  return guard(__func__, [&] {
    AdapterSelection selection = single_selection(adapters, names, weights, count);
    changing(generator, "mlora_generator_set_active_adapters")
        ->set_selection(std::move(selection), "generator set_active_adapters");
  });
}

MLORA_API mlora_status_t mlora_generator_set_active_adapters_per_row(mlora_generator_t* generator,
                                                                     const mlora_adapters_t* adapters,
                                                                     const char* const* names, const float* weights,
                                                                     const size_t* row_counts, size_t batch_size) {
  return guard(__func__, [&] {
    AdapterSelection selection = per_row_selection(adapters, names, weights, row_counts, batch_size);
    changing(generator, "mlora_generator_set_active_adapters_per_row")
        ->set_selection(std::move(selection), "generator set_active_adapters_per_row");
  });
}

MLORA_API mlora_status_t mlora_generator_params_set_stop_tokens(mlora_generator_params_t* params, const int32_t* tokens,
                                                                size_t count) {
  return guard(__func__, [&] { params_of(params)->set_stop_tokens(tokens, count); });
}

}  // extern "C"
