// Token selection from one row of logits: repetition penalty, min-length eos masking, then greedy argmax
// or sampling with temperature, top-k and top-p. Deterministic for a given seed on every platform (own
// uniform draw from std::mt19937_64, no implementation-defined distributions).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "gen/genai_config.h"

namespace mlora {

class Sampler {
 public:
  // seed -1 = from std::random_device.
  explicit Sampler(int64_t seed);

  // Chooses the next token for one sequence. `logits` (vocab floats) is modified in place.
  //   - repetition_penalty != 1: every token id in `history` gets logit / p if positive, logit * p otherwise
  //     (the CTRL / Hugging Face rule), each id once;
  //   - `ban_eos`: the eos ids get -inf (min_length not reached yet);
  //   - greedy when !do_sample or top_k == 1 (first index of the maximum);
  //   - else logits / temperature, keep the top_k largest (top_k 0 = all), softmax, keep the smallest
  //     prefix (by descending probability) whose mass reaches top_p, renormalise and draw.
  int32_t choose(float* logits, size_t vocab, const std::vector<int32_t>& history, const SearchOptions& search,
                 const std::vector<int32_t>& eos_ids, bool ban_eos);

 private:
  double uniform();  // [0, 1)
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // scratch
  std::vector<float> probs_;    // scratch
};

}  // namespace mlora
