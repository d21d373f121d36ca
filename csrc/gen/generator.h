// Generator: drives a GenAI-layout decoder (genai_config.json) through a prompt pass and decode steps.
//
// KV cache, two ways:
//   - growing: the present.* outputs of one Run are fed back as the past_key_values.* inputs of the next,
//     as the OrtValues ORT returned (no copy on our side; the attention op concatenates past and new);
//   - shared buffer (genai_config search.past_present_share_buffer, for models without position_ids, i.e.
//     GroupQueryAttention): one [batch, kv_heads, max_length, head_size] buffer per past/present pair,
//     allocated once and bound both as the past input and as the preallocated present output, which the
//     attention op updates in place — no per-step allocation or copy of the cache (what GenAI does).
// The attention mask and position ids are kept on the host and rebuilt per pass (B x width int64s,
// negligible next to the Run). Runs go straight to the model's ORT session with the active set's LoRA feeds.
//
// Padding of a batch of prompts of different lengths depends on how the model reads the mask:
//   - models with a position_ids input (attention that applies the mask): left padding, the classic layout —
//     pads first, masked out, positions counted from each row's first real token;
//   - models without position_ids (GenAI's model builder with GroupQueryAttention, which derives each row's
//     length and rotary positions from the mask's row sums and takes every row's cache as a prefix): each
//     row is kept as a prefix — a prompt is followed by its pads, a row's mask is ones for the positions it
//     occupies, and its logits are read at its own last position. Left padding would give such a model
//     wrong results (its attention ignores where the zeros are).
// Either way a row of a batch generates exactly what the same prompt generates alone.
//
// Steps are lazy like onnxruntime-genai's: generate_next_token() first runs the model on the tokens chosen
// by the previous step (if any), then chooses the next ones; logits() runs that pass early, so it returns
// the logits of the pending choice. So an adapter switch between two steps applies to every token not yet
// fed, and no pass is wasted after the last token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gen/genai_config.h"
#include "gen/sampling.h"
#include "model/model.h"
#include "ort/ort.h"
#include "run/adapter_selection.h"

namespace mlora {

class GeneratorParams;
class Tensor;

class Generator {
 public:
  // Copies the params' search options and adapter selection; keeps params and model alive. Not internally
  // synchronized: one thread at a time (the ABI refuses overlapping calls with BUSY). Throws
  // INVALID_ARGUMENT (params of another model, per-row sets for another batch size), FORMAT (the decoder lacks an
  // input/output named by genai_config.json, or has an unsupported dtype for it).
  Generator(std::shared_ptr<const Model> model, std::shared_ptr<const GeneratorParams> params);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Batch size 1: appends tokens to the sequence and runs them through the model (prompt pass, or more
  // tokens after generated ones). Throws INVALID_ARGUMENT (count 0, token id outside the vocabulary,
  // batch_size > 1), SHAPE_MISMATCH (beyond max_length or the context length), RUNTIME.
  void append_tokens(const int32_t* tokens, size_t count);
  // The first pass of a batch: one prompt per sequence. Throws as append_tokens, plus INVALID_ARGUMENT when
  // the batch differs from the params' batch_size, a length is 0, or prompts were appended already.
  void append_token_sequences(const int32_t* tokens, const size_t* lengths, size_t batch);
  // Runs the pending tokens (if any) and chooses one more token for every sequence not done. Throws
  // INVALID_ARGUMENT (no prompt yet, already done), RUNTIME.
  void generate_next_token();

  // onnxruntime-genai's RewindTo (batch size 1): keeps the first `length` tokens of the sequence and of the
  // KV cache (shared buffer: the row length; growing cache: sliced copies); continue with append_tokens,
  // get_logits or generate_next_token. 0 starts over (a prompt must be appended again). Throws
  // INVALID_ARGUMENT (batch size > 1, length beyond the sequence, nothing appended yet), RUNTIME.
  void rewind_to(size_t length);

  bool is_done() const noexcept;
  size_t batch_size() const noexcept { return batch_; }
  // Prompt then generated tokens of sequence `index` (no padding). Throws INVALID_ARGUMENT for the index.
  const std::vector<int32_t>& sequence(size_t index) const;
  // The tokens of the last step (pad id for sequences that were already done). Throws INVALID_ARGUMENT
  // before the first step.
  const std::vector<int32_t>& next_tokens() const;
  // The logits the next generate_next_token() will choose from, float32 [batch, vocab] (onnxruntime-genai's
  // get_logits): after append_tokens, those of the prompt's last position; after a step, it first runs the
  // pending tokens (the pass generate_next_token would run) so the adapter set active now applies to them.
  // Once the generator is done: the logits the last tokens were chosen from, without a pass. Throws
  // INVALID_ARGUMENT before the first pass, RUNTIME.
  std::shared_ptr<const Tensor> logits();
  // Applies to every token not yet fed. Throws INVALID_ARGUMENT when the sets belong to another model, or
  // per-row sets were made for another batch size than the generator's.
  void set_selection(AdapterSelection selection, const char* who);
  const AdapterSelection& selection() const noexcept { return selection_; }

  const std::shared_ptr<const Model>& model() const noexcept { return model_; }

 private:
  enum class Padding { kLeft, kPrefix };

  void check_new_tokens(const int32_t* tokens, size_t count, const char* what) const;
  // Runs one pass feeding `step` tokens per row (ids: batch x step, row-major), after the cache/mask/
  // positions were extended for them by the caller; reads each row's logits at `last[b]`.
  void run_pass(const std::vector<int64_t>& ids, size_t step, const std::vector<int64_t>& positions,
                const std::vector<size_t>& last);
  void feed_pending();
  void allocate_shared_kv();

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const GeneratorParams> params_;
  AdapterSelection selection_;
  const GenaiConfig& config_;
  SearchOptions search_;
  std::vector<int32_t> stop_tokens_;  // from the params (end a sequence like eos)
  Sampler sampler_;

  // Decoder I/O, resolved once.
  Padding padding_ = Padding::kLeft;
  int32_t ids_dtype_ = 0, mask_dtype_ = 0, pos_dtype_ = 0, kv_dtype_ = 0;
  bool has_mask_ = false, has_pos_ = false;
  int64_t kv_heads_ = 0, head_size_ = 0;
  std::vector<std::string> input_names_;   // ids, [mask], [positions], past k/v per layer
  std::vector<std::string> output_names_;  // logits, present k/v per layer
  std::vector<const char*> input_cnames_, output_cnames_;

  // State.
  size_t batch_ = 0;
  bool started_ = false;
  bool pending_ = false;  // next_ holds tokens chosen but not yet fed to the model
  std::vector<std::vector<int32_t>> sequences_;
  std::vector<uint8_t> done_;
  std::vector<int32_t> generated_;  // per row: tokens chosen by generate_next_token (max_new_tokens)
  std::vector<uint8_t> real_;       // per row: whether the pending token is real (1) or filler for a done row
  std::vector<int32_t> next_;
  bool have_step_ = false;
  int64_t width_ = 0;              // positions in the cache (padded), = attention mask columns
  std::vector<int64_t> mask_;      // batch x width_
  std::vector<int64_t> next_pos_;  // per row: position id of its next token (kLeft)
  std::vector<int64_t> row_len_;   // per row: positions it occupies (kPrefix)
  std::vector<OrtValuePtr> past_;  // growing cache: 2 per layer, from the last Run
  bool shared_kv_ = false;         // shared-buffer cache (see above)
  std::vector<std::shared_ptr<void>> kv_buffers_;
  std::vector<OrtValuePtr> kv_in_, kv_out_;  // over kv_buffers_: bound as past inputs / present outputs
  std::vector<float> logits_;                // batch x vocab_
  size_t vocab_ = 0;
  std::vector<float> scratch_;
};

}  // namespace mlora
