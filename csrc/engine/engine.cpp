#include "engine/engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>

#include "adapter/dequantize.h"
#include "gen/params.h"
#include "model/tensor.h"
#include "run/active_set.h"
#include "run/adapter_selection.h"
#include "run/batch_set.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

double seconds(Request::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

// ---- Request --------------------------------------------------------------------------------------------

size_t Request::read(int32_t* buf, size_t capacity, int32_t timeout_ms, bool* done) {
  std::unique_lock<std::mutex> lk(mu_);
  auto ready = [this] { return !out_.empty() || finished_; };
  if (timeout_ms < 0) {
    cv_.wait(lk, ready);
  } else if (timeout_ms > 0) {
    cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), ready);
  }
  const size_t n = std::min(capacity, out_.size());
  for (size_t i = 0; i < n; ++i) {
    buf[i] = out_.front();
    out_.pop_front();
  }
  if (done) *done = finished_ && out_.empty();
  return n;
}

bool Request::cancel() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_) return false;
  }
  if (cancel_.exchange(true)) return false;
  if (auto engine = engine_.lock()) engine->wake();
  return true;
}

bool Request::is_done() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

FinishReason Request::finish_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return reason_;
}

RequestUsage Request::usage() const {
  std::lock_guard<std::mutex> lk(mu_);
  RequestUsage u = usage_;
  if (!is_admitted_) u.queue_seconds = seconds(Clock::now() - submitted_);
  return u;
}

int32_t Request::error_status() const {
  std::lock_guard<std::mutex> lk(mu_);
  return status_;
}

std::string Request::error_message() const {
  std::lock_guard<std::mutex> lk(mu_);
  return message_;
}

// ---- Engine ---------------------------------------------------------------------------------------------

Engine::Engine(std::shared_ptr<const Model> model, std::shared_ptr<SlotTable> slots, const EngineOptions& options)
    : model_(std::move(model)), slots_(std::move(slots)), options_(options), config_([this]() -> const GenaiConfig& {
        const GenaiConfig* c = model_->genai_config();
        if (!c) {
          fail(MLORA_STATUS_INVALID_ARGUMENT,
               "model '" + model_->path() + "' has no genai_config.json: the engine needs a GenAI model folder");
        }
        return *c;
      }()) {
  if (options_.max_batch_size < 1 || options_.max_batch_size > 4096) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "max_batch_size " + std::to_string(options_.max_batch_size) + " is outside 1..4096");
  }
  if (options_.max_tokens_per_step < 1) fail(MLORA_STATUS_INVALID_ARGUMENT, "max_tokens_per_step must be >= 1");
  require_batching(*model_);
  if (!slots_) fail(MLORA_STATUS_INTERNAL, "engine: the model '" + model_->path() + "' has no slot table");
  const Model& m = *model_;
  const GenaiConfig& c = config_;
  const IoInfo* ids = m.find_input(c.input_ids);
  const IoInfo* mask = m.find_input(c.attention_mask);
  if (!ids || !is_index_dtype(ids->dtype) || !mask || !is_index_dtype(mask->dtype) || m.find_input(c.position_ids)) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "decoder '" + m.onnx_path() + "' does not have the layout the engine serves: int64/int32 '" + c.input_ids +
             "' and '" + c.attention_mask + "' and no '" + c.position_ids +
             "' (GroupQueryAttention with a shared past/present buffer, as onnxruntime-genai's model builder writes)");
  }
  ids_dtype_ = ids->dtype;
  mask_dtype_ = mask->dtype;
  input_names_ = {c.input_ids, c.attention_mask};
  output_names_ = {c.logits};
  kv_heads_ = c.num_key_value_heads;
  head_size_ = c.head_size;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    for (const std::string& pattern : {c.past_key_names, c.past_value_names}) {
      const std::string name = GenaiConfig::layer_name(pattern, layer);
      const IoInfo* in = m.find_input(name);
      if (!in || !dtype_is_float(in->dtype) || in->shape.size() != 4) {
        fail(MLORA_STATUS_FORMAT, "decoder '" + m.onnx_path() + "' has no floating rank-4 input '" + name + "'");
      }
      if (kv_dtype_ == 0) kv_dtype_ = in->dtype;
      if (in->shape[1] > 0) kv_heads_ = in->shape[1];
      if (in->shape[3] > 0) head_size_ = in->shape[3];
      input_names_.push_back(name);
    }
    output_names_.push_back(GenaiConfig::layer_name(c.present_key_names, layer));
    output_names_.push_back(GenaiConfig::layer_name(c.present_value_names, layer));
  }
  for (const std::string& n : input_names_) input_cnames_.push_back(n.c_str());
  for (const std::string& n : output_names_) output_cnames_.push_back(n.c_str());

  max_length_ = c.context_length;
  if (max_length_ <= 0) fail(MLORA_STATUS_FORMAT, "'" + c.path + "' has no positive model.context_length");
  row_bytes_ = static_cast<size_t>(kv_heads_ * max_length_ * head_size_) * dtype_size(kv_dtype_);
  const size_t bytes = row_bytes_ * options_.max_batch_size;
  for (size_t i = 0; i + 1 < output_names_.size(); ++i) {
    void* p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    kv_buffers_.emplace_back(p, [](void* q) { std::free(q); });
  }
  rows_.assign(options_.max_batch_size, nullptr);
  row_len_.assign(options_.max_batch_size, 0);
}

Engine::~Engine() { close(); }

void Engine::start() {
  if (options_.worker && !worker_.joinable()) worker_ = std::thread([this] { worker_loop(); });
}

void Engine::wake() {
  std::lock_guard<std::mutex> lk(mu_);
  work_.notify_all();
}

bool Engine::closed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return closed_;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  EngineStats s = stats_;
  s.queued = queue_.size();
  return s;
}

bool Engine::has_work_locked() const { return !queue_.empty() || stats_.running > 0; }

namespace {

// Whether `source` (a plain model) is the model ours was prepared from: the same LoRA inputs, except that the
// float inputs that replaced a quantized pair (Model::dequant_targets) stand for that pair's quantized inputs.
bool same_lora_inputs(const Model& ours_model, const Model& source) {
  const auto& ours = ours_model.lora_inputs();
  const auto& theirs = source.lora_inputs();
  const auto& targets = ours_model.dequant_targets();
  if (targets.empty()) {
    bool same = ours.size() == theirs.size();
    for (size_t i = 0; same && i < ours.size(); ++i) {
      same = ours[i].name == theirs[i].name && ours_model.accepts_lora_dtype(ours[i], theirs[i].dtype) &&
             ours[i].dim0 == theirs[i].dim0 && ours[i].dim1 == theirs[i].dim1 &&
             ours[i].rank_axis == theirs[i].rank_axis;
    }
    return same;
  }
  std::set<std::string> expected, got;
  std::set<std::string> replaced;
  for (const DequantTarget& t : targets) {
    replaced.insert(t.target);
    for (const std::string* n : {&t.weight, &t.scales, &t.zero_points}) {
      if (!n->empty()) expected.insert(*n);
    }
  }
  for (const LoraInput& in : ours) {
    if (!replaced.count(in.name)) expected.insert(in.name);
  }
  for (const LoraInput& in : theirs) got.insert(in.name);
  return expected == got;
}

}  // namespace

void Engine::check_params_model(const Model& source) const {
  if (&source == model_.get()) return;
  bool same = same_lora_inputs(*model_, source);
  const GenaiConfig* c = source.genai_config();
  same = same && c && c->vocab_size == config_.vocab_size && c->context_length == config_.context_length;
  if (!same) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "the generator params were created for model '" + source.path() +
                                            "', not for the engine's model '" + model_->path() +
                                            "' (nor for the folder it was prepared from: the LoRA inputs, vocabulary "
                                            "or context differ)");
  }
}

std::shared_ptr<const ActiveSet> Engine::own_set(const std::shared_ptr<const ActiveSet>& set) {
  if (!set || set->model() == model_) return set;
  check_params_model(*set->model());
  std::lock_guard<std::mutex> lk(sets_mu_);
  for (auto it = sets_.begin(); it != sets_.end();) {  // forget translations of released source sets
    it = it->second.first.expired() ? sets_.erase(it) : std::next(it);
  }
  auto& entry = sets_[set.get()];
  if (!entry.second || entry.first.lock() != set) {
    std::vector<ActiveEntry> entries = set->entries();
    // From a quantized-LoRA model: the adapters' quantized tensors dequantized for our float inputs (once per set).
    for (ActiveEntry& e : entries) {
      e.adapter = dequantize_adapter(e.adapter, *model_, "adapter '" + e.name + "' (" + e.adapter->source() + ")");
    }
    entry = {set, ActiveSet::build(model_, std::move(entries))};
  }
  return entry.second;
}

std::shared_ptr<Request> Engine::submit(std::shared_ptr<const GeneratorParams> params, const int32_t* tokens,
                                        size_t count) {
  if (!params) fail(MLORA_STATUS_INVALID_ARGUMENT, "params is null");
  check_params_model(*params->model());
  const SearchOptions s = params->search();  // snapshots: the params may change after submit
  const AdapterSelection selection = params->selection();
  if (selection.per_row()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "the params hold per-row adapter sets; a request is one sequence: use set_active_adapters");
  }
  if (s.batch_size != 1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "the params' batch_size is " + std::to_string(s.batch_size) + "; a request is one sequence (batch_size 1)");
  }
  if (params->model() == model_) selection.check_model(*model_, "engine submit");
  if (count == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "the prompt is empty (count is 0)");
  if (!tokens) fail(MLORA_STATUS_INVALID_ARGUMENT, "tokens is NULL");
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "prompt token [" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                              " is outside the vocabulary (0.." +
                                              std::to_string(config_.vocab_size - 1) + ")");
    }
  }
  const int64_t max_total = std::min<int64_t>(s.max_length > 0 ? s.max_length : max_length_, max_length_);
  if (static_cast<int64_t>(count) > config_.context_length) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "the prompt has " + std::to_string(count) +
                                          " tokens, longer than the model's context length " +
                                          std::to_string(config_.context_length));
  }
  if (static_cast<int64_t>(count) >= max_total) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "the prompt has " + std::to_string(count) +
                                          " tokens, leaving no room for a new token within max_length " +
                                          std::to_string(max_total));
  }
  auto r = std::make_shared<Request>();
  r->engine_ = weak_from_this();
  r->params_ = params;
  r->set_ = own_set(selection.single());
  r->search_ = s;
  r->stop_ = params->stop_tokens();
  r->tokens_.assign(tokens, tokens + count);
  r->prompt_len_ = count;
  r->max_total_ = static_cast<size_t>(max_total);
  r->sampler_ = std::make_unique<Sampler>(s.random_seed);
  r->usage_.prompt_tokens = count;
  r->submitted_ = Request::Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_) fail(MLORA_STATUS_CLOSED, "the engine is closed");
    if (queue_.size() >= options_.max_queue) {
      fail(MLORA_STATUS_BUSY,
           "the engine's queue is full (" + std::to_string(options_.max_queue) + " requests waiting); retry later");
    }
    queue_.push_back(r);
    work_.notify_all();
  }
  return r;
}

bool Engine::step() {
  if (options_.worker) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "the engine has its own worker thread; step() is for engines created "
         "with the worker disabled");
  }
  std::lock_guard<std::mutex> step_lock(step_mu_);
  if (closed()) fail(MLORA_STATUS_CLOSED, "the engine is closed");
  return step_locked();
}

void Engine::worker_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_.wait(lk, [this] { return closed_ || has_work_locked(); });
      if (closed_) return;
    }
    std::lock_guard<std::mutex> step_lock(step_mu_);
    step_locked();
  }
}

void Engine::close() {
  std::deque<std::shared_ptr<Request>> queued;
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    queued.swap(queue_);
    work_.notify_all();
  }
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
  const std::string why = "the engine was closed";
  for (auto& r : queued) finish(*r, FinishReason::kCancelled, MLORA_STATUS_CLOSED, why);
  std::lock_guard<std::mutex> step_lock(step_mu_);
  for (auto& r : rows_) {
    if (r) finish(*r, FinishReason::kCancelled, MLORA_STATUS_CLOSED, why);  // frees the row
  }
  prefill_order_.clear();
}

void Engine::finish(Request& r, FinishReason reason, int32_t status, const std::string& message) {
  {
    std::lock_guard<std::mutex> lk(r.mu_);
    if (r.finished_) return;
    r.finished_ = true;
    r.reason_ = reason;
    r.status_ = status;
    r.message_ = message;
    if (!r.is_admitted_) r.usage_.queue_seconds = seconds(Request::Clock::now() - r.submitted_);
    r.is_admitted_ = true;  // usage no longer counts queue time
    r.cv_.notify_all();
  }
  if (r.row_ >= 0) free_row(r);
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.finished;
}

void Engine::free_row(Request& r) {
  const auto row = static_cast<size_t>(r.row_);
  prefill_order_.erase(std::remove(prefill_order_.begin(), prefill_order_.end(), &r), prefill_order_.end());
  r.row_ = -1;
  row_len_[row] = 0;
  std::shared_ptr<Request> keep = std::move(rows_[row]);  // r may be owned only by the row
  rows_[row] = nullptr;
  std::lock_guard<std::mutex> lk(mu_);
  --stats_.running;
}

void Engine::emit(Request& r, int32_t token) {
  r.tokens_.push_back(token);
  std::lock_guard<std::mutex> lk(r.mu_);
  r.out_.push_back(token);
  if (r.usage_.generated_tokens++ == 0) r.usage_.ttft_seconds = seconds(Request::Clock::now() - r.submitted_);
  r.cv_.notify_all();
}

void Engine::choose(Request& r, float* logits) {
  const SearchOptions& s = r.search_;
  const bool ban_eos = r.tokens_.size() < static_cast<size_t>(s.min_length);
  const int32_t token = r.sampler_->choose(logits, vocab_, r.tokens_, s, config_.eos_token_ids, ban_eos);
  emit(r, token);
  const size_t generated = r.tokens_.size() - r.prompt_len_;
  if (contains(config_.eos_token_ids, token)) {
    finish(r, FinishReason::kEos);
  } else if (contains(r.stop_, token)) {
    finish(r, FinishReason::kStop);
  } else if ((s.max_new_tokens > 0 && generated >= static_cast<size_t>(s.max_new_tokens)) ||
             r.tokens_.size() >= r.max_total_) {
    finish(r, FinishReason::kLength);
  } else {
    r.pending_ = token;
  }
}

void Engine::admit() {
  std::lock_guard<std::mutex> lk(mu_);
  while (!queue_.empty()) {
    auto free_it = std::find(rows_.begin(), rows_.end(), nullptr);
    if (free_it == rows_.end()) return;
    const std::shared_ptr<Request>& head = queue_.front();
    if (head->set_) {
      std::set<const ActiveSet*> sets;
      for (const auto& r : rows_) {
        if (r && r->set_) sets.insert(r->set_.get());
      }
      sets.insert(head->set_.get());
      if (sets.size() > model_->batch_slots() - 1) return;  // waits for a set in use to leave
    }
    std::shared_ptr<Request> r = head;
    queue_.pop_front();
    const auto row = static_cast<size_t>(free_it - rows_.begin());
    r->row_ = static_cast<int64_t>(row);
    row_len_[row] = 0;
    rows_[row] = r;
    prefill_order_.push_back(r.get());
    ++stats_.running;
    std::lock_guard<std::mutex> rl(r->mu_);
    r->admitted_ = Request::Clock::now();
    r->is_admitted_ = true;
    r->usage_.queue_seconds = seconds(r->admitted_ - r->submitted_);
  }
}

bool Engine::step_locked() {
  // 1. Cancelled requests.
  std::vector<std::shared_ptr<Request>> dropped;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->cancel_.load()) {
        dropped.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : dropped) finish(*r, FinishReason::kCancelled);
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i] && rows_[i]->cancel_.load()) finish(*rows_[i], FinishReason::kCancelled);
  }
  // 2. Admission, 3. decode, 4. prefill.
  admit();
  size_t decoding = 0;
  for (const auto& r : rows_) decoding += r && r->pending_ >= 0;
  if (decoding) decode();
  // The budget protects decoding rows from long prefill steps; with none decoding, prompts go whole.
  const size_t budget = decoding == 0                             ? SIZE_MAX
                        : options_.max_tokens_per_step > decoding ? options_.max_tokens_per_step - decoding
                                                                  : 1;
  prefill(budget);
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.steps;
  return has_work_locked();
}

void Engine::run(std::vector<const char*> names, std::vector<const OrtValue*> values,
                 const std::vector<OrtValue*>& kv_out, int64_t batch, int64_t seq, size_t* out_rows) {
  std::vector<OrtValue*> results(output_cnames_.size(), nullptr);
  for (size_t i = 0; i < kv_out.size(); ++i) results[1 + i] = kv_out[i];
  const OrtApi& api = ort();
  // No LoRA feeds appended (every row of the pass on the base model): the base graph's session, if any.
  const bool base_only = names.size() == input_cnames_.size();
  OrtStatus* status = api.Run(model_->session_for_run(base_only), nullptr, names.data(), values.data(), values.size(),
                              output_cnames_.data(), results.size(), results.data());
  OrtValuePtr logits(results[0]);
  ort_check(status, "running the decoder of model '" + model_->path() + "'");
  OrtTensorTypeAndShapeInfo* raw_info = nullptr;
  ort_check(api.GetTensorTypeAndShape(logits.get(), &raw_info), "reading the logits");
  OrtTensorTypeAndShapeInfoPtr info(raw_info);
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ort_check(api.GetTensorElementType(info.get(), &type), "reading the logits");
  size_t rank = 0;
  ort_check(api.GetDimensionsCount(info.get(), &rank), "reading the logits");
  std::vector<int64_t> shape(rank);
  if (rank) ort_check(api.GetDimensions(info.get(), shape.data(), rank), "reading the logits");
  if ((rank != 3 && rank != 2) || shape[0] != batch || shape.back() <= 0 ||
      (rank == 3 && shape[1] != seq && shape[1] != 1)) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "decoder output '" + config_.logits + "' has shape " + shape_str(shape) +
                                          "; expected [" + std::to_string(batch) + ", " + std::to_string(seq) +
                                          " or 1, vocab]");
  }
  void* data = nullptr;
  ort_check(api.GetTensorMutableData(logits.get(), &data), "reading the logits");
  vocab_ = static_cast<size_t>(shape.back());
  *out_rows = rank == 3 ? static_cast<size_t>(shape[1]) : 1;
  const size_t n = static_cast<size_t>(batch) * *out_rows * vocab_;
  logits_.resize(n);
  const auto dtype = static_cast<int32_t>(type);
  if (dtype == MLORA_DTYPE_FLOAT32) {
    std::memcpy(logits_.data(), data, n * sizeof(float));
  } else {
    for (size_t i = 0; i < n; ++i) logits_[i] = element_to_float(dtype, data, i);
  }
}

void Engine::decode() {
  size_t top = 0;  // rows 0..top-1 ride in the pass
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i] && rows_[i]->pending_ >= 0) top = i + 1;
  }
  const auto b = static_cast<int64_t>(top);
  std::vector<int64_t> ids(top, config_.pad_token_id), lens(top);
  std::vector<std::shared_ptr<const ActiveSet>> sets(top);
  std::vector<std::shared_ptr<Request>> decoding;
  for (size_t i = 0; i < top; ++i) {
    const auto& r = rows_[i];
    lens[i] = row_len_[i] + 1;  // a filler row's token lands just past its prefix, overwritten later
    if (r && r->pending_ >= 0) {
      ids[i] = r->pending_;
      sets[i] = r->set_;
      decoding.push_back(r);
    }
  }
  const int64_t width = *std::max_element(lens.begin(), lens.end());
  std::vector<int64_t> mask(top * static_cast<size_t>(width), 0);
  for (size_t i = 0; i < top; ++i) std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(i * width), lens[i], 1);
  try {
    std::vector<int64_t> ids64, mask64;
    std::vector<int32_t> ids32, mask32;
    std::vector<OrtValuePtr> owned;
    owned.push_back(make_index_tensor(ids, {b, 1}, ids_dtype_, ids64, ids32));
    owned.push_back(make_index_tensor(mask, {b, width}, mask_dtype_, mask64, mask32));
    const std::vector<int64_t> kv_shape = {b, kv_heads_, max_length_, head_size_};
    const size_t kv_bytes = row_bytes_ * top;
    std::vector<OrtValuePtr> kv_in, kv_out;
    std::vector<OrtValue*> kv_raw;
    for (const auto& buf : kv_buffers_) {
      kv_in.push_back(make_ort_tensor(kv_dtype_, kv_shape, buf.get(), kv_bytes));
      kv_out.push_back(make_ort_tensor(kv_dtype_, kv_shape, buf.get(), kv_bytes));
      kv_raw.push_back(kv_out.back().get());
    }
    std::vector<const char*> names(input_cnames_);
    std::vector<const OrtValue*> values;
    for (const auto& v : owned) values.push_back(v.get());
    for (const auto& v : kv_in) values.push_back(v.get());
    // Every row on the base model: no sets, no lease, no LoRA feeds (the base graph runs, if any).
    const bool any_set = std::any_of(sets.begin(), sets.end(), [](const auto& set) { return set != nullptr; });
    std::shared_ptr<const BatchSet> batch_set = any_set ? BatchSet::build(model_, slots_, sets) : nullptr;
    std::unique_ptr<SlotTable::Lease> lease = batch_set ? batch_set->acquire() : nullptr;  // slots pinned
    if (lease) {
      names.insert(names.end(), lease->feed_names().begin(), lease->feed_names().end());
      values.insert(values.end(), lease->feed_values().begin(), lease->feed_values().end());
    }
    size_t rows = 0;
    run(names, values, kv_raw, b, 1, &rows);
  } catch (const Error& e) {
    for (auto& r : decoding) finish(*r, FinishReason::kError, e.status(), e.what());
    return;
  } catch (const std::bad_alloc&) {
    for (auto& r : decoding) finish(*r, FinishReason::kError, MLORA_STATUS_OUT_OF_MEMORY, "out of memory");
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.decode_tokens += decoding.size();
  }
  for (auto& r : decoding) {
    const auto row = static_cast<size_t>(r->row_);
    row_len_[row] += 1;
    r->pending_ = -1;
    choose(*r, &logits_[row * vocab_]);
  }
}

void Engine::prefill(size_t budget) {
  const std::vector<Request*> order = prefill_order_;
  for (Request* r : order) {
    if (budget == 0) return;
    const size_t row = static_cast<size_t>(r->row_);
    const size_t chunk = std::min(budget, r->prompt_len_ - r->prefilled_);
    budget -= chunk;
    std::shared_ptr<Request> keep = rows_[row];
    try {
      std::vector<int64_t> ids(r->tokens_.begin() + static_cast<std::ptrdiff_t>(r->prefilled_),
                               r->tokens_.begin() + static_cast<std::ptrdiff_t>(r->prefilled_ + chunk));
      const int64_t width = row_len_[row] + static_cast<int64_t>(chunk);
      std::vector<int64_t> mask(static_cast<size_t>(width), 1);
      std::vector<int64_t> ids64, mask64;
      std::vector<int32_t> ids32, mask32;
      std::vector<OrtValuePtr> owned;
      owned.push_back(make_index_tensor(ids, {1, static_cast<int64_t>(chunk)}, ids_dtype_, ids64, ids32));
      owned.push_back(make_index_tensor(mask, {1, width}, mask_dtype_, mask64, mask32));
      // The row's slice of every KV buffer, as a batch of one.
      const std::vector<int64_t> kv_shape = {1, kv_heads_, max_length_, head_size_};
      std::vector<OrtValuePtr> kv_in, kv_out;
      std::vector<OrtValue*> kv_raw;
      for (const auto& buf : kv_buffers_) {
        char* slice = static_cast<char*>(buf.get()) + row * row_bytes_;
        kv_in.push_back(make_ort_tensor(kv_dtype_, kv_shape, slice, row_bytes_));
        kv_out.push_back(make_ort_tensor(kv_dtype_, kv_shape, slice, row_bytes_));
        kv_raw.push_back(kv_out.back().get());
      }
      std::vector<const char*> names(input_cnames_);
      std::vector<const OrtValue*> values;
      for (const auto& v : owned) values.push_back(v.get());
      for (const auto& v : kv_in) values.push_back(v.get());
      if (r->set_) {  // batch 1: the set's own feeds (its slot [1, ...], lora_slot's default [0])
        names.insert(names.end(), r->set_->feed_names().begin(), r->set_->feed_names().end());
        values.insert(values.end(), r->set_->feed_values().begin(), r->set_->feed_values().end());
      }
      size_t rows = 0;
      run(names, values, kv_raw, 1, static_cast<int64_t>(chunk), &rows);
      row_len_[row] = width;
      r->prefilled_ += chunk;
      {
        std::lock_guard<std::mutex> lk(mu_);
        stats_.prefill_tokens += chunk;
      }
      if (r->prefilled_ == r->prompt_len_) {
        prefill_order_.erase(std::remove(prefill_order_.begin(), prefill_order_.end(), r), prefill_order_.end());
        choose(*r, &logits_[(rows - 1) * vocab_]);
      }
    } catch (const Error& e) {
      finish(*r, FinishReason::kError, e.status(), e.what());
    } catch (const std::bad_alloc&) {
      finish(*r, FinishReason::kError, MLORA_STATUS_OUT_OF_MEMORY, "out of memory");
    }
  }
}

}  // namespace mlora
