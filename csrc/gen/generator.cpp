#include "gen/generator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gen/params.h"
#include "model/tensor.h"
#include "util/dtype.h"
#include "util/error.h"

namespace mlora {

namespace {

const IoInfo* find_output(const Model& model, const std::string& name) {
  for (const IoInfo& o : model.outputs()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

[[noreturn]] void missing(const Model& model, const GenaiConfig& config, const char* kind, const std::string& name,
                          const std::string& key) {
  fail(MLORA_STATUS_FORMAT, "decoder '" + model.onnx_path() + "' has no " + kind + " '" + name + "' (named by " + key +
                                " in '" + config.path + "')");
}

}  // namespace

Generator::Generator(std::shared_ptr<const Model> model, std::shared_ptr<const GeneratorParams> params)
    : model_(std::move(model)),
      params_(std::move(params)),
      selection_(params_->selection()),
      config_(params_->config()),
      search_(params_->search()),
      stop_tokens_(params_->stop_tokens()),
      sampler_(search_.random_seed) {
  if (params_->model() != model_) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "the generator params were created for model '" + params_->model()->path() +
                                            "', not for '" + model_->path() + "'");
  }
  const Model& m = *model_;
  const GenaiConfig& c = config_;
  const IoInfo* ids = m.find_input(c.input_ids);
  if (!ids) missing(m, c, "input", c.input_ids, "model.decoder.inputs.input_ids");
  if (!is_index_dtype(ids->dtype)) {
    fail(MLORA_STATUS_FORMAT, "decoder input '" + c.input_ids + "' is " + dtype_name(ids->dtype) +
                                  "; multilora feeds token ids as int64 or int32");
  }
  ids_dtype_ = ids->dtype;
  input_names_.push_back(c.input_ids);
  if (const IoInfo* mask = m.find_input(c.attention_mask)) {
    if (!is_index_dtype(mask->dtype)) {
      fail(MLORA_STATUS_FORMAT,
           "decoder input '" + c.attention_mask + "' is " + dtype_name(mask->dtype) + "; expected int64 or int32");
    }
    has_mask_ = true;
    mask_dtype_ = mask->dtype;
    input_names_.push_back(c.attention_mask);
  }
  if (const IoInfo* pos = m.find_input(c.position_ids)) {
    if (!is_index_dtype(pos->dtype)) {
      fail(MLORA_STATUS_FORMAT,
           "decoder input '" + c.position_ids + "' is " + dtype_name(pos->dtype) + "; expected int64 or int32");
    }
    has_pos_ = true;
    pos_dtype_ = pos->dtype;
    input_names_.push_back(c.position_ids);
  }
  padding_ = has_mask_ && !has_pos_ ? Padding::kPrefix : Padding::kLeft;

  const IoInfo* logits = find_output(m, c.logits);
  if (!logits) missing(m, c, "output", c.logits, "model.decoder.outputs.logits");
  if (!dtype_is_float(logits->dtype)) {
    fail(MLORA_STATUS_FORMAT,
         "decoder output '" + c.logits + "' is " + dtype_name(logits->dtype) + "; expected a floating type");
  }
  output_names_.push_back(c.logits);
  kv_heads_ = c.num_key_value_heads;
  head_size_ = c.head_size;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string pk = GenaiConfig::layer_name(c.past_key_names, layer);
    const std::string pv = GenaiConfig::layer_name(c.past_value_names, layer);
    const std::string ok = GenaiConfig::layer_name(c.present_key_names, layer);
    const std::string ov = GenaiConfig::layer_name(c.present_value_names, layer);
    for (const std::string* name : {&pk, &pv}) {
      const IoInfo* in = m.find_input(*name);
      if (!in)
        missing(m, c, "input", *name,
                name == &pk ? "model.decoder.inputs.past_key_names" : "model.decoder.inputs.past_value_names");
      if (!dtype_is_float(in->dtype)) {
        fail(MLORA_STATUS_FORMAT,
             "decoder input '" + *name + "' is " + dtype_name(in->dtype) + "; expected a floating type");
      }
      if (kv_dtype_ == 0) kv_dtype_ = in->dtype;
      if (in->shape.size() != 4) {
        fail(MLORA_STATUS_FORMAT, "decoder input '" + *name + "' has rank " + std::to_string(in->shape.size()) +
                                      "; expected [batch, kv_heads, past_length, head_size]");
      }
      // Fixed dims in the model win over the config (some exports leave them symbolic).
      if (in->shape[1] > 0) kv_heads_ = in->shape[1];
      if (in->shape[3] > 0) head_size_ = in->shape[3];
      input_names_.push_back(*name);
    }
    for (const std::string* name : {&ok, &ov}) {
      if (!find_output(m, *name)) {
        missing(m, c, "output", *name,
                name == &ok ? "model.decoder.outputs.present_key_names" : "model.decoder.outputs.present_value_names");
      }
      output_names_.push_back(*name);
    }
  }
  set_selection(selection_, "generator");  // checks the model and the batch size
  shared_kv_ = c.past_present_share_buffer && padding_ == Padding::kPrefix;
  for (const std::string& n : input_names_) input_cnames_.push_back(n.c_str());
  for (const std::string& n : output_names_) output_cnames_.push_back(n.c_str());
}

Generator::~Generator() = default;

bool Generator::is_done() const noexcept {
  if (!started_) return false;
  return std::all_of(done_.begin(), done_.end(), [](uint8_t d) { return d != 0; });
}

const std::vector<int32_t>& Generator::sequence(size_t index) const {
  if (index >= batch_) {
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "sequence index " + std::to_string(index) + " is out of range (batch size " + std::to_string(batch_) + ")");
  }
  return sequences_[index];
}

const std::vector<int32_t>& Generator::next_tokens() const {
  if (!have_step_) fail(MLORA_STATUS_INVALID_ARGUMENT, "no token generated yet (call generate_next_token first)");
  return next_;
}

std::shared_ptr<const Tensor> Generator::logits() {
  // onnxruntime-genai's semantics: the logits the next choice will be made from. The tokens chosen by the
  // last step (or the last token kept by rewind_to) are fed now; generate_next_token then does not feed
  // them again. Once every sequence is done nothing is fed: the logits stay those the last tokens were
  // chosen from.
  if (started_ && pending_ && !is_done()) feed_pending();
  if (logits_.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, "no model pass yet (append tokens first)");
  return Tensor::copy_of(MLORA_DTYPE_FLOAT32, {static_cast<int64_t>(batch_), static_cast<int64_t>(vocab_)},
                         logits_.data(), logits_.size() * sizeof(float));
}

void Generator::set_selection(AdapterSelection selection, const char* who) {
  selection.check_model(*model_, who);
  selection.check_batch_size(batch_ ? static_cast<int64_t>(batch_) : static_cast<int64_t>(search_.batch_size), who);
  selection_ = std::move(selection);
}

void Generator::check_new_tokens(const int32_t* tokens, size_t count, const char* what) const {
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + "[" + std::to_string(i) +
                                              "] = " + std::to_string(tokens[i]) + " is outside the vocabulary (0.." +
                                              std::to_string(config_.vocab_size - 1) + ")");
    }
  }
}

void Generator::run_pass(const std::vector<int64_t>& ids, size_t step, const std::vector<int64_t>& positions,
                         const std::vector<size_t>& last) {
  const int64_t b = static_cast<int64_t>(batch_);
  const int64_t s = static_cast<int64_t>(step);
  // Buffers the input OrtValues point into; alive until Run returns.
  std::vector<int64_t> ids64, mask64, pos64;
  std::vector<int32_t> ids32, mask32, pos32;
  std::vector<OrtValuePtr> owned;
  owned.push_back(make_index_tensor(ids, {b, s}, ids_dtype_, ids64, ids32));
  if (has_mask_) {
    if (padding_ == Padding::kPrefix) {
      mask_.assign(batch_ * static_cast<size_t>(width_), 0);
      for (size_t r = 0; r < batch_; ++r) {
        std::fill_n(mask_.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(width_)), row_len_[r], 1);
      }
    }
    owned.push_back(make_index_tensor(mask_, {b, width_}, mask_dtype_, mask64, mask32));
  }
  if (has_pos_) owned.push_back(make_index_tensor(positions, {b, s}, pos_dtype_, pos64, pos32));
  const size_t kv_count = output_names_.size() - 1;
  if (!shared_kv_ && past_.empty()) {
    for (size_t i = 0; i < kv_count; ++i) {
      owned.push_back(make_ort_tensor(kv_dtype_, {b, kv_heads_, 0, head_size_}, nullptr, 0));
    }
  }
  std::vector<const char*> names(input_cnames_);
  std::vector<const OrtValue*> values;
  // The LoRA feeds: the single set's, or a slot-table lease's (slots pinned until Run returns).
  const AdapterSelection::Feeds lora = selection_.feeds();
  values.reserve(names.size() + lora.values().size());
  for (const auto& v : owned) values.push_back(v.get());
  if (shared_kv_) {
    for (const auto& v : kv_in_) values.push_back(v.get());
  } else if (!past_.empty()) {
    for (const auto& v : past_) values.push_back(v.get());
  }
  names.insert(names.end(), lora.names().begin(), lora.names().end());
  values.insert(values.end(), lora.values().begin(), lora.values().end());
  // Straight to the session: every regular input is built here to the decoder's declared dtypes, and the
  // LoRA feeds were validated when their adapters were loaded.
  std::vector<OrtValue*> results(output_cnames_.size(), nullptr);
  if (shared_kv_) {
    for (size_t i = 0; i < kv_count; ++i) results[1 + i] = kv_out_[i].get();  // ours: updated in place
  }
  const OrtApi& api = ort();
  // No LoRA feeds (no set, or every row on the base): the base graph's session when the model has one. Both
  // graphs take the same KV-cache inputs, so consecutive passes may switch between them.
  OrtStatus* status = api.Run(model_->session_for_run(lora.values().empty()), nullptr, names.data(), values.data(),
                              values.size(), output_cnames_.data(), results.size(), results.data());
  std::vector<OrtValuePtr> outputs;  // what ORT allocated: logits, and the presents of a growing cache
  outputs.emplace_back(results[0]);
  if (!shared_kv_) {
    for (size_t i = 0; i < kv_count; ++i) outputs.emplace_back(results[1 + i]);
  }
  ort_check(status, "running the decoder of model '" + model_->path() + "'");

  // Logits: [batch, seq, vocab] (or [batch, vocab]); each row's at its own last position.
  OrtTensorTypeAndShapeInfo* raw_info = nullptr;
  ort_check(api.GetTensorTypeAndShape(outputs[0].get(), &raw_info), "reading the logits");
  OrtTensorTypeAndShapeInfoPtr info(raw_info);
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ort_check(api.GetTensorElementType(info.get(), &type), "reading the logits");
  size_t rank = 0;
  ort_check(api.GetDimensionsCount(info.get(), &rank), "reading the logits");
  std::vector<int64_t> shape(rank);
  if (rank) ort_check(api.GetDimensions(info.get(), shape.data(), rank), "reading the logits");
  if ((rank != 3 && rank != 2) || shape[0] != b || shape.back() <= 0 || (rank == 3 && shape[1] != s && shape[1] != 1)) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "decoder output '" + config_.logits + "' has shape " + shape_str(shape) +
                                          "; expected [" + std::to_string(b) + ", " + std::to_string(s) +
                                          " or 1, vocab]");
  }
  void* data = nullptr;
  ort_check(api.GetTensorMutableData(outputs[0].get(), &data), "reading the logits");
  const int32_t dtype = static_cast<int32_t>(type);
  vocab_ = static_cast<size_t>(shape.back());
  const size_t rows = rank == 3 ? static_cast<size_t>(shape[1]) : 1;
  logits_.resize(batch_ * vocab_);
  for (size_t r = 0; r < batch_; ++r) {
    const size_t pos = rows == 1 ? 0 : last[r];
    const size_t base = (r * rows + pos) * vocab_;
    if (dtype == MLORA_DTYPE_FLOAT32) {
      std::memcpy(&logits_[r * vocab_], static_cast<const float*>(data) + base, vocab_ * sizeof(float));
    } else {
      for (size_t v = 0; v < vocab_; ++v) logits_[r * vocab_ + v] = element_to_float(dtype, data, base + v);
    }
  }
  // A growing cache: the presents become the next pass's pasts, as they are.
  if (!shared_kv_) {
    past_.clear();
    for (size_t i = 1; i < outputs.size(); ++i) past_.push_back(std::move(outputs[i]));
  }
}

void Generator::allocate_shared_kv() {
  const size_t kv_count = output_names_.size() - 1;
  const std::vector<int64_t> shape = {static_cast<int64_t>(batch_), kv_heads_, search_.max_length, head_size_};
  const size_t bytes = element_count(shape, "KV cache") * dtype_size(kv_dtype_);
  kv_buffers_.clear();
  kv_in_.clear();
  kv_out_.clear();
  for (size_t i = 0; i < kv_count; ++i) {
    void* p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    kv_buffers_.emplace_back(p, [](void* q) { std::free(q); });
    kv_in_.push_back(make_ort_tensor(kv_dtype_, shape, p, bytes));
    kv_out_.push_back(make_ort_tensor(kv_dtype_, shape, p, bytes));
  }
}

void Generator::append_tokens(const int32_t* tokens, size_t count) {
  if (count == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "no tokens to append (count is 0)");
  if (!tokens) fail(MLORA_STATUS_INVALID_ARGUMENT, "tokens is NULL");
  if (!started_) {
    append_token_sequences(tokens, &count, 1);
    return;
  }
  if (batch_ != 1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "cannot append tokens to a batch of " + std::to_string(batch_) +
                                            " sequences after the prompts (only batch size 1 continues)");
  }
  check_new_tokens(tokens, count, "tokens");
  // The pending token (chosen by the last step, not yet fed) goes first.
  std::vector<int64_t> ids;
  if (pending_) ids.push_back(next_[0]);
  ids.insert(ids.end(), tokens, tokens + count);
  const size_t total = sequences_[0].size() + count;
  const int64_t width = width_ + static_cast<int64_t>(ids.size());
  if (total > static_cast<size_t>(config_.context_length) || width > config_.context_length) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "appending " + std::to_string(count) + " tokens makes the sequence " +
                                          std::to_string(std::max<int64_t>(static_cast<int64_t>(total), width)) +
                                          " tokens long, beyond the model's context length " +
                                          std::to_string(config_.context_length));
  }
  if (total > static_cast<size_t>(search_.max_length)) {
    fail(MLORA_STATUS_SHAPE_MISMATCH, "appending " + std::to_string(count) + " tokens makes the sequence " +
                                          std::to_string(total) + " tokens long, beyond max_length " +
                                          std::to_string(search_.max_length));
  }
  const size_t step = ids.size();
  std::vector<int64_t> positions;
  if (padding_ == Padding::kLeft) {
    for (size_t i = 0; i < step; ++i) {
      positions.push_back(next_pos_[0]++);
      mask_.push_back(1);
    }
    width_ = width;
  } else {
    row_len_[0] += static_cast<int64_t>(step);
    width_ = row_len_[0];
  }
  pending_ = false;
  run_pass(ids, step, positions, {step - 1});
  sequences_[0].insert(sequences_[0].end(), tokens, tokens + count);
  done_[0] = sequences_[0].size() >= static_cast<size_t>(search_.max_length);
}

void Generator::append_token_sequences(const int32_t* tokens, const size_t* lengths, size_t batch) {
  if (started_) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "prompts were appended already; append_token_sequences starts a batch");
  }
  if (batch == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "batch size is 0");
  if (!lengths) fail(MLORA_STATUS_INVALID_ARGUMENT, "lengths is NULL");
  if (batch != static_cast<size_t>(search_.batch_size)) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, std::to_string(batch) + (batch == 1 ? " sequence" : " sequences") +
                                            " given but the params' batch_size is " +
                                            std::to_string(search_.batch_size));
  }
  size_t total = 0, longest = 0;
  for (size_t r = 0; r < batch; ++r) {
    const size_t n = lengths[r];
    if (n == 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "prompt " + std::to_string(r) + " is empty (length 0)");
    if (n > static_cast<size_t>(config_.context_length)) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "prompt " + std::to_string(r) + " has " + std::to_string(n) +
                                            " tokens, longer than the model's context length " +
                                            std::to_string(config_.context_length) + " (model.context_length in '" +
                                            config_.path + "')");
    }
    if (n > static_cast<size_t>(search_.max_length)) {
      fail(MLORA_STATUS_SHAPE_MISMATCH, "prompt " + std::to_string(r) + " has " + std::to_string(n) +
                                            " tokens, more than max_length " + std::to_string(search_.max_length));
    }
    total += n;
    longest = std::max(longest, n);
  }
  if (!tokens && total) fail(MLORA_STATUS_INVALID_ARGUMENT, "tokens is NULL");
  check_new_tokens(tokens, total, "tokens");
  if (!has_mask_) {
    for (size_t r = 0; r < batch; ++r) {
      if (lengths[r] != longest) {
        fail(MLORA_STATUS_INVALID_ARGUMENT, "prompts of different lengths need an attention mask, and decoder '" +
                                                model_->onnx_path() + "' has no input '" + config_.attention_mask +
                                                "'");
      }
    }
  }

  const int64_t pad = config_.pad_token_id;
  std::vector<int64_t> ids(batch * longest, pad), positions;
  std::vector<size_t> last(batch);
  mask_.assign(batch * longest, 0);
  next_pos_.assign(batch, 0);
  row_len_.assign(batch, 0);
  sequences_.assign(batch, {});
  if (padding_ == Padding::kLeft) positions.assign(batch * longest, 0);
  size_t offset = 0;
  for (size_t r = 0; r < batch; ++r) {
    const size_t n = lengths[r];
    const size_t start = padding_ == Padding::kLeft ? longest - n : 0;  // first real column
    for (size_t i = 0; i < n; ++i) {
      ids[r * longest + start + i] = tokens[offset + i];
      mask_[r * longest + start + i] = 1;
      if (padding_ == Padding::kLeft) positions[r * longest + start + i] = static_cast<int64_t>(i);
    }
    last[r] = start + n - 1;
    next_pos_[r] = static_cast<int64_t>(n);
    row_len_[r] = static_cast<int64_t>(n);
    sequences_[r].assign(tokens + offset, tokens + offset + n);
    offset += n;
  }
  batch_ = batch;
  width_ = static_cast<int64_t>(longest);
  past_.clear();
  if (shared_kv_) allocate_shared_kv();
  run_pass(ids, longest, positions, last);
  done_.assign(batch, 0);
  generated_.assign(batch, 0);
  real_.assign(batch, 1);
  next_.assign(batch, static_cast<int32_t>(pad));
  for (size_t r = 0; r < batch; ++r) done_[r] = sequences_[r].size() >= static_cast<size_t>(search_.max_length);
  started_ = true;
}

void Generator::feed_pending() {
  std::vector<int64_t> ids(batch_), positions;
  if (padding_ == Padding::kLeft) {
    // One more column: 1 for real tokens, 0 for the filler of rows that were already done.
    std::vector<int64_t> mask;
    mask.reserve(batch_ * static_cast<size_t>(width_ + 1));
    for (size_t r = 0; r < batch_; ++r) {
      const auto row = mask_.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(width_));
      mask.insert(mask.end(), row, row + width_);
      mask.push_back(real_[r]);
    }
    mask_.swap(mask);
    positions.resize(batch_);
    for (size_t r = 0; r < batch_; ++r) positions[r] = real_[r] ? next_pos_[r]++ : next_pos_[r];
    ++width_;
  } else {
    // A row's cache stays a prefix of its own length. A done row's filler token does not extend it: it
    // lands on the row's last slot, which nothing reads any more.
    for (size_t r = 0; r < batch_; ++r) row_len_[r] += real_[r];
    width_ = *std::max_element(row_len_.begin(), row_len_.end());
  }
  for (size_t r = 0; r < batch_; ++r) ids[r] = next_[r];
  pending_ = false;
  run_pass(ids, 1, positions, std::vector<size_t>(batch_, 0));
}

void Generator::rewind_to(size_t length) {
  if (!started_) {
    if (length == 0) return;
    fail(MLORA_STATUS_INVALID_ARGUMENT,
         "cannot rewind to length " + std::to_string(length) + ": no prompt appended yet");
  }
  if (batch_ != 1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "rewind_to needs batch size 1 (the generator has " + std::to_string(batch_) +
                                            " sequences), as in onnxruntime-genai");
  }
  const size_t current = sequences_[0].size();
  if (length > current) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "cannot rewind to length " + std::to_string(length) + ": the sequence has " +
                                            std::to_string(current) + " tokens");
  }
  if (length == 0) {  // back to a fresh generator (same params, adapters as set now)
    logits_.clear();
    started_ = pending_ = have_step_ = false;
    batch_ = 0;
    width_ = 0;
    sequences_.clear();
    done_.clear();
    real_.clear();
    next_.clear();
    mask_.clear();
    next_pos_.clear();
    row_len_.clear();
    past_.clear();
    return;
  }
  // The cache keeps the first length - 1 tokens; the last kept token becomes pending, so the next pass
  // (get_logits, generate_next_token or append_tokens) feeds it and yields the logits after it.
  const int64_t kept = static_cast<int64_t>(length) - 1;
  // A growing cache is sliced first (copies), so a failure leaves the generator as it was.
  std::vector<OrtValuePtr> sliced;
  if (!shared_kv_ && kept > 0) {
    const OrtApi& api = ort();
    OrtAllocator* allocator = nullptr;
    ort_check(api.GetAllocatorWithDefaultOptions(&allocator), "rewinding the KV cache");
    const size_t elem = dtype_size(kv_dtype_);
    for (const OrtValuePtr& value : past_) {
      OrtTensorTypeAndShapeInfo* raw_info = nullptr;
      ort_check(api.GetTensorTypeAndShape(value.get(), &raw_info), "rewinding the KV cache");
      OrtTensorTypeAndShapeInfoPtr info(raw_info);
      std::vector<int64_t> shape(4);
      ort_check(api.GetDimensions(info.get(), shape.data(), 4), "rewinding the KV cache");
      const std::vector<int64_t> cut = {shape[0], shape[1], kept, shape[3]};
      OrtValue* raw = nullptr;
      ort_check(api.CreateTensorAsOrtValue(allocator, cut.data(), cut.size(), to_ort_element_type(kv_dtype_), &raw),
                "rewinding the KV cache");
      OrtValuePtr part(raw);
      void* src = nullptr;
      void* dst = nullptr;
      ort_check(api.GetTensorMutableData(value.get(), &src), "rewinding the KV cache");
      ort_check(api.GetTensorMutableData(part.get(), &dst), "rewinding the KV cache");
      const size_t row = static_cast<size_t>(kept * shape[3]) * elem;  // one head's kept positions
      const size_t stride = static_cast<size_t>(shape[2] * shape[3]) * elem;
      for (int64_t h = 0; h < shape[0] * shape[1]; ++h) {
        std::memcpy(static_cast<uint8_t*>(dst) + static_cast<size_t>(h) * row,
                    static_cast<const uint8_t*>(src) + static_cast<size_t>(h) * stride, row);
      }
      sliced.push_back(std::move(part));
    }
  }
  logits_.clear();
  sequences_[0].resize(length);
  next_[0] = sequences_[0].back();
  real_[0] = 1;
  pending_ = true;
  done_[0] = length >= static_cast<size_t>(search_.max_length);
  if (padding_ == Padding::kLeft) {
    mask_.assign(static_cast<size_t>(kept), 1);
    next_pos_[0] = kept;
  } else {
    row_len_[0] = kept;
  }
  width_ = kept;
  // The shared buffer is addressed by the mask (later passes overwrite the rest); a growing cache takes
  // the slices, or starts from empty pasts when nothing is kept.
  if (!shared_kv_) past_ = std::move(sliced);
}

void Generator::generate_next_token() {
  if (!started_) fail(MLORA_STATUS_INVALID_ARGUMENT, "no prompt appended yet (call append_tokens first)");
  if (is_done()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "generation is done (every sequence reached eos or max_length)");
  }
  if (pending_) feed_pending();
  const auto pad = static_cast<int32_t>(config_.pad_token_id);
  // A left-padded batch whose cache reached the context length cannot take another token (rows kept as
  // prefixes never outgrow max_length <= context length).
  const bool full = padding_ == Padding::kLeft && width_ + 1 > config_.context_length;
  scratch_.resize(vocab_);
  for (size_t r = 0; r < batch_; ++r) {
    real_[r] = !done_[r];
    if (done_[r]) {
      next_[r] = pad;
      continue;
    }
    std::copy_n(&logits_[r * vocab_], vocab_, scratch_.data());
    const bool ban_eos = sequences_[r].size() < static_cast<size_t>(search_.min_length);
    const int32_t token =
        sampler_.choose(scratch_.data(), vocab_, sequences_[r], search_, config_.eos_token_ids, ban_eos);
    sequences_[r].push_back(token);
    next_[r] = token;
    const bool eos =
        std::find(config_.eos_token_ids.begin(), config_.eos_token_ids.end(), token) != config_.eos_token_ids.end();
    const bool stop = std::find(stop_tokens_.begin(), stop_tokens_.end(), token) != stop_tokens_.end();
    const bool enough = search_.max_new_tokens > 0 && ++generated_[r] >= search_.max_new_tokens;
    if (eos || stop || enough || sequences_[r].size() >= static_cast<size_t>(search_.max_length) || full) done_[r] = 1;
  }
  have_step_ = true;
  pending_ = true;
}

}  // namespace mlora
