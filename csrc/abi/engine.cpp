// Header section "Engine".
#include "engine/engine.h"

#include "abi/abi.h"
#include "gen/params.h"
#include "run/batch_set.h"

// Handle boxes of this section. The engine handle owns the engine (release closes it); a request handle
// shares the request with the engine, which drops its reference when the request finishes.
struct mlora_engine_options {
  mutable std::mutex mutex;  // setters and mlora_engine_create (which copies the options) may race
  mlora::EngineOptions options;
};
struct mlora_engine {
  std::shared_ptr<mlora::Engine> engine;
};
struct mlora_request {
  std::shared_ptr<mlora::Request> request;
};

using namespace mlora;
using namespace mlora::abi;

namespace {

// Each call holds a strong reference to the box (and so the engine / request) until it returns.
std::shared_ptr<mlora_engine_options> options_of(const mlora_engine_options_t* o) {
  return hold(const_cast<mlora_engine_options_t*>(o), HandleType::kEngineOptions, "options");
}
std::shared_ptr<Engine> engine_of(const mlora_engine_t* e) {
  return hold(const_cast<mlora_engine_t*>(e), HandleType::kEngine, "engine")->engine;
}
std::shared_ptr<Request> request_of(const mlora_request_t* r) {
  return hold(const_cast<mlora_request_t*>(r), HandleType::kRequest, "request")->request;
}

}  // namespace

extern "C" {

MLORA_API mlora_status_t mlora_engine_options_create(mlora_engine_options_t** out_options) {
  return guard(__func__, [&] {
    out_arg(out_options, "out_options");
    emit(out_options, HandleType::kEngineOptions);
  });
}

MLORA_API void mlora_engine_options_release(mlora_engine_options_t* options) {
  release(options, HandleType::kEngineOptions);
}

MLORA_API mlora_status_t mlora_engine_options_set_max_batch_size(mlora_engine_options_t* options,
                                                                 size_t max_batch_size) {
  return guard(__func__, [&] {
    auto o = options_of(options);
    if (max_batch_size < 1 || max_batch_size > 4096) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "max_batch_size " + std::to_string(max_batch_size) + " is outside 1..4096");
    }
    std::lock_guard<std::mutex> lock(o->mutex);
    o->options.max_batch_size = max_batch_size;
  });
}

MLORA_API mlora_status_t mlora_engine_options_set_max_tokens_per_step(mlora_engine_options_t* options,
                                                                      size_t max_tokens) {
  return guard(__func__, [&] {
    auto o = options_of(options);
    if (max_tokens < 1) fail(MLORA_STATUS_INVALID_ARGUMENT, "max_tokens_per_step must be >= 1 (got 0)");
    std::lock_guard<std::mutex> lock(o->mutex);
    o->options.max_tokens_per_step = max_tokens;
  });
}

MLORA_API mlora_status_t mlora_engine_options_set_max_queue(mlora_engine_options_t* options, size_t max_queue) {
  return guard(__func__, [&] {
    auto o = options_of(options);
    std::lock_guard<std::mutex> lock(o->mutex);
    o->options.max_queue = max_queue;
  });
}

MLORA_API mlora_status_t mlora_engine_options_set_worker(mlora_engine_options_t* options, int32_t enable) {
  return guard(__func__, [&] {
    auto o = options_of(options);
    if (enable != 0 && enable != 1) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "worker: " + std::to_string(enable) + " is not 0 or 1");
    }
    std::lock_guard<std::mutex> lock(o->mutex);
    o->options.worker = enable != 0;
  });
}

MLORA_API mlora_status_t mlora_engine_create(const mlora_model_t* model, const mlora_engine_options_t* options,
                                             mlora_engine_t** out_engine) {
  return guard(__func__, [&] {
    const auto m = hold(const_cast<mlora_model_t*>(model), HandleType::kModel, "model");
    EngineOptions o;
    if (options) {
      auto box = options_of(options);
      std::lock_guard<std::mutex> lock(box->mutex);
      o = box->options;
    }
    out_arg(out_engine, "out_engine");
    require_batching(*m->model);
    auto engine = std::make_shared<Engine>(m->model, m->slots, o);
    engine->start();
    emit(out_engine, HandleType::kEngine, std::move(engine));
  });
}

MLORA_API void mlora_engine_release(mlora_engine_t* engine) {
  if (!engine) return;
  try {
    std::shared_ptr<void> last = unregister_handle(engine, HandleType::kEngine);
    if (last) std::static_pointer_cast<mlora_engine>(last)->engine->close();
  } catch (...) {  // never fails
  }
}

MLORA_API mlora_status_t mlora_engine_close(mlora_engine_t* engine) {
  return guard(__func__, [&] { engine_of(engine)->close(); });
}

MLORA_API mlora_status_t mlora_engine_step(mlora_engine_t* engine, int32_t* out_has_work) {
  return guard(__func__, [&] {
    const bool more = engine_of(engine)->step();
    if (out_has_work) *out_has_work = more ? 1 : 0;
  });
}

MLORA_API mlora_status_t mlora_engine_submit(mlora_engine_t* engine, const mlora_generator_params_t* params,
                                             const int32_t* tokens, size_t count, mlora_request_t** out_request) {
  return guard(__func__, [&] {
    const auto e = engine_of(engine);
    const auto p = params_ref(params);
    out_arg(out_request, "out_request");
    emit(out_request, HandleType::kRequest, e->submit(p, tokens, count));
  });
}

MLORA_API mlora_status_t mlora_engine_stats(const mlora_engine_t* engine, uint64_t* out_queued, uint64_t* out_running,
                                            uint64_t* out_finished, uint64_t* out_steps, uint64_t* out_decode_tokens,
                                            uint64_t* out_prefill_tokens) {
  return guard(__func__, [&] {
    const EngineStats s = engine_of(engine)->stats();
    if (out_queued) *out_queued = s.queued;
    if (out_running) *out_running = s.running;
    if (out_finished) *out_finished = s.finished;
    if (out_steps) *out_steps = s.steps;
    if (out_decode_tokens) *out_decode_tokens = s.decode_tokens;
    if (out_prefill_tokens) *out_prefill_tokens = s.prefill_tokens;
  });
}

MLORA_API mlora_status_t mlora_request_read(mlora_request_t* request, int32_t* buf, size_t capacity, int32_t timeout_ms,
                                            size_t* out_count, int32_t* out_done) {
  return guard(__func__, [&] {
    const auto r = request_of(request);
    out_arg(out_count, "out_count");
    if (capacity && !buf)
      fail(MLORA_STATUS_INVALID_ARGUMENT, "buf is NULL but capacity is " + std::to_string(capacity));
    bool done = false;
    *out_count = r->read(buf, capacity, timeout_ms, &done);
    if (out_done) *out_done = done ? 1 : 0;
  });
}

MLORA_API mlora_status_t mlora_request_cancel(mlora_request_t* request, int32_t* out_cancelled) {
  return guard(__func__, [&] {
    const bool cancelled = request_of(request)->cancel();
    if (out_cancelled) *out_cancelled = cancelled ? 1 : 0;
  });
}

MLORA_API mlora_status_t mlora_request_finish_reason(const mlora_request_t* request,
                                                     mlora_finish_reason_t* out_reason) {
  return guard(__func__, [&] {
    const auto r = request_of(request);
    out_arg(out_reason, "out_reason");
    *out_reason = static_cast<mlora_finish_reason_t>(r->finish_reason());
  });
}

MLORA_API mlora_status_t mlora_request_usage(const mlora_request_t* request, uint64_t* out_prompt_tokens,
                                             uint64_t* out_generated_tokens, double* out_queue_seconds,
                                             double* out_ttft_seconds) {
  return guard(__func__, [&] {
    const RequestUsage u = request_of(request)->usage();
    if (out_prompt_tokens) *out_prompt_tokens = u.prompt_tokens;
    if (out_generated_tokens) *out_generated_tokens = u.generated_tokens;
    if (out_queue_seconds) *out_queue_seconds = u.queue_seconds;
    if (out_ttft_seconds) *out_ttft_seconds = u.ttft_seconds;
  });
}

MLORA_API mlora_status_t mlora_request_error(const mlora_request_t* request, mlora_status_t* out_status, char* buf,
                                             size_t capacity, size_t* out_len) {
  return guard(__func__, [&] {
    const auto r = request_of(request);
    if (out_status) *out_status = r->error_status();
    write_string(r->error_message(), buf, capacity, out_len, "the request's error message");
  });
}

MLORA_API void mlora_request_release(mlora_request_t* request) {
  if (!request) return;
  try {
    std::shared_ptr<void> last = unregister_handle(request, HandleType::kRequest);
    if (last) std::static_pointer_cast<mlora_request>(last)->request->cancel();  // nobody can read it any more
  } catch (...) {                                                                // never fails
  }
}

}  // extern "C"
