// Engine: continuous batching of generation requests, each with its own adapter set and search options
// (DESIGN.md §6b), over one GenAI decoder prepared for adapter-aware batching (`multilora prepare-batching`).
//
// KV cache: one buffer per past/present pair, [max_batch_size, kv_heads, max_length, head_size], allocated
// when the engine is created and bound both as past input and as present output (shared-buffer mode of
// GroupQueryAttention, the layout GenAI's model builder writes: no position_ids, each row's cache a prefix
// whose length the attention op reads from the row's mask sum). A request owns one row from admission to
// finish; a finished row is simply overwritten by its next occupant (no reallocation, no copy).
//
// A step (engine thread, or an explicit step() call):
//   1. drops cancelled requests (queued ones, and running ones whose row is then free);
//   2. admits queued requests FIFO into free rows while the running rows plus the newcomer use at most
//      S-1 distinct adapter sets (S = the model's slot table size): a request whose set cannot get a slot
//      waits at the head of the queue — nothing in use is evicted, and nothing overtakes it;
//   3. one decode pass over rows 0..h (h = the highest decoding row): each decoding row feeds its pending
//      token; rows inside that range that are free or still prefilling ride along with a filler token
//      written just past their prefix, where their next real token overwrites it. LoRA comes from a slot
//      table lease, one slot per distinct set, `lora_slot` per row;
//   4. prefill with the rest of the token budget (max_tokens_per_step minus the decoding rows, at least
//      1; no limit while no row decodes): prefilling rows in admission order each get a chunk, run at
//      batch 1 on a [1, ...] view of the row's slice of the KV buffers with the row's set fed directly. A
//      prompt's last chunk yields its first token.
// Why prefill at batch 1 (benchmarks/measure_engine_prefill.py): GroupQueryAttention refuses a pass with more than one
// new token per row over a non-empty cache unless the batch is 1, so a chunk cannot join the decode pass or be batched
// with other rows' chunks; and a batch-1 chunk costs only its own tokens, where padding it into the batch would cost
// batch x chunk.
//
// Every chosen token is streamed, including the eos or stop token that ended the request.
// Thread-safety: submit/close/stats and every Request method are safe from any thread; step() is
// serialized internally (one step at a time).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gen/genai_config.h"
#include "gen/sampling.h"
#include "model/model.h"
#include "ort/ort.h"

namespace mlora {

class ActiveSet;
class GeneratorParams;
class SlotTable;
class Engine;

enum class FinishReason : int32_t { kNone = 0, kLength = 1, kEos = 2, kStop = 3, kCancelled = 4, kError = 5 };

struct EngineOptions {
  size_t max_batch_size = 16;       // KV rows
  size_t max_tokens_per_step = 64;  // decode tokens + prefill tokens per step (see docs/notes.md)
  size_t max_queue = 1024;          // requests waiting for a row; over it submit throws BUSY
  bool worker = true;               // an engine-owned thread steps; otherwise the host calls step()
};

struct RequestUsage {
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  double queue_seconds = 0;  // submit -> admission (row assigned); so far when still queued
  double ttft_seconds = -1;  // submit -> first token; -1 before it
};

struct EngineStats {
  uint64_t queued = 0, running = 0, finished = 0, steps = 0, decode_tokens = 0, prefill_tokens = 0;
};

class Request {
 public:
  using Clock = std::chrono::steady_clock;
  // Waits up to timeout_ms (0 = poll, < 0 = forever) for tokens or the end; copies up to `capacity` into buf.
  // *done = finished and nothing left to read.
  size_t read(int32_t* buf, size_t capacity, int32_t timeout_ms, bool* done);
  // Asks the engine to stop it; the row is freed at the next step. Returns false if it was already finished
  // or cancelled (nothing to do).
  bool cancel();
  bool is_done() const;
  FinishReason finish_reason() const;
  RequestUsage usage() const;
  // Status and message of a request that finished with kError or was cancelled by close (CLOSED); OK otherwise.
  int32_t error_status() const;
  std::string error_message() const;

  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  Request() = default;

 private:
  friend class Engine;
  // Result side (guarded by mu_).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int32_t> out_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::kNone;
  int32_t status_ = 0;
  std::string message_;
  RequestUsage usage_;
  Clock::time_point submitted_, admitted_;
  bool is_admitted_ = false;
  std::atomic<bool> cancel_{false};
  std::weak_ptr<Engine> engine_;

  // Scheduling side (engine step only).
  std::shared_ptr<const GeneratorParams> params_;
  std::shared_ptr<const ActiveSet> set_;  // null = base model
  SearchOptions search_;
  std::vector<int32_t> stop_;
  std::vector<int32_t> tokens_;  // prompt then generated
  size_t prompt_len_ = 0;
  size_t prefilled_ = 0;  // prompt tokens in the KV cache
  size_t max_total_ = 0;  // stop at this sequence length
  std::unique_ptr<Sampler> sampler_;
  int32_t pending_ = -1;  // chosen, not yet fed (decoding rows)
  int64_t row_ = -1;
};

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  // Throws INVALID_ARGUMENT (model not prepared for batching — naming `multilora prepare-batching` — no
  // genai_config.json, bad option), UNSUPPORTED layouts as INVALID_ARGUMENT (a decoder with position_ids:
  // the engine needs the builder's GroupQueryAttention layout), OUT_OF_MEMORY. Call start() after.
  // `slots` is the model's slot table (the one its adapters registries use).
  Engine(std::shared_ptr<const Model> model, std::shared_ptr<SlotTable> slots, const EngineOptions& options);
  ~Engine();
  // Starts the worker thread (when options.worker). Separate from the constructor: the worker needs
  // shared_from_this.
  void start();

  // Validates and queues a request (copies the params' search options, stop tokens and adapter set; keeps
  // the params alive). Throws CLOSED, BUSY (queue full), INVALID_ARGUMENT, SHAPE_MISMATCH (prompt too long).
  std::shared_ptr<Request> submit(std::shared_ptr<const GeneratorParams> params, const int32_t* tokens, size_t count);
  // One step (see above). Returns true if there is work left (running or queued requests). Throws
  // INVALID_ARGUMENT when the engine has a worker, CLOSED after close.
  bool step();
  // Cancels every queued and running request (finish kCancelled, error status CLOSED), stops the worker;
  // later submits throw CLOSED. Idempotent.
  void close();
  bool closed() const;
  EngineStats stats() const;
  const EngineOptions& options() const noexcept { return options_; }
  const std::shared_ptr<const Model>& model() const noexcept { return model_; }

  void wake();  // a request was cancelled

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

 private:
  bool step_locked();  // step_mu_ held
  void worker_loop();
  bool has_work_locked() const;  // mu_ held
  void finish(Request& r, FinishReason reason, int32_t status = 0, const std::string& message = {});
  void emit(Request& r, int32_t token);
  // Chooses r's next token from `logits` (vocab floats, modified); streams it; finishes r if it ends.
  void choose(Request& r, float* logits);
  void free_row(Request& r);
  // Params of `source` are accepted when it is this engine's model or the unprepared folder it was prepared from
  // (same LoRA inputs in the same order, same vocabulary and context): Python's ml.Engine prepares a plain folder
  // into a cache directory and keeps the user's params and adapters. Throws INVALID_ARGUMENT naming both models.
  void check_params_model(const Model& source) const;
  // `set` as a set of this engine's model: itself, or (for a set of the source folder) a set built once from the
  // same adapters and weights and kept while `set` lives, so requests sharing a set share one slot.
  std::shared_ptr<const ActiveSet> own_set(const std::shared_ptr<const ActiveSet>& set);
  void admit();
  void decode();
  void prefill(size_t budget);
  // Runs the decoder; returns logits as float32 [batch, seq_or_1, vocab] in logits_ (seq_out rows per batch).
  void run(std::vector<const char*> names, std::vector<const OrtValue*> values, const std::vector<OrtValue*>& kv_out,
           int64_t batch, int64_t seq, size_t* out_rows);

  const std::shared_ptr<const Model> model_;
  const std::shared_ptr<SlotTable> slots_;
  const EngineOptions options_;
  const GenaiConfig& config_;
  int64_t max_length_ = 0;  // KV positions per row
  int32_t ids_dtype_ = 0, mask_dtype_ = 0, kv_dtype_ = 0;
  int64_t kv_heads_ = 0, head_size_ = 0;
  std::vector<std::string> input_names_, output_names_;
  std::vector<const char*> input_cnames_, output_cnames_;
  std::vector<std::shared_ptr<void>> kv_buffers_;  // one per past/present pair entry (2 per layer)
  size_t row_bytes_ = 0;                           // bytes of one row of one buffer

  mutable std::mutex mu_;  // queue_, closed_, stats_, rows_ membership
  std::condition_variable work_;
  std::deque<std::shared_ptr<Request>> queue_;
  bool closed_ = false;
  EngineStats stats_;

  // own_set's translations, keyed by the source set (weak: an entry goes when its source set is released).
  std::mutex sets_mu_;
  std::map<const ActiveSet*, std::pair<std::weak_ptr<const ActiveSet>, std::shared_ptr<const ActiveSet>>> sets_;

  std::mutex step_mu_;
  std::vector<std::shared_ptr<Request>> rows_;  // [max_batch_size], null = free
  std::vector<int64_t> row_len_;                // positions in the cache per row
  std::vector<Request*> prefill_order_;         // admission order of rows still prefilling
  std::vector<float> logits_;
  size_t vocab_ = 0;
  std::thread worker_;
};

}  // namespace mlora
