#include "gen/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace mlora {

namespace {

uint64_t seed_value(int64_t seed) {
  if (seed >= 0) return static_cast<uint64_t>(seed);
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

size_t argmax(const float* x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

}  // namespace

Sampler::Sampler(int64_t seed) : rng_(seed_value(seed)) {}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0); }

int32_t Sampler::choose(float* logits, size_t vocab, const std::vector<int32_t>& history, const SearchOptions& search,
                        const std::vector<int32_t>& eos_ids, bool ban_eos) {
  if (search.repetition_penalty != 1.0) {
    const float p = static_cast<float>(search.repetition_penalty);
    std::unordered_set<int32_t> seen;
    for (int32_t t : history) {
      if (t < 0 || static_cast<size_t>(t) >= vocab || !seen.insert(t).second) continue;
      float& l = logits[t];
      l = l > 0.0f ? l / p : l * p;
    }
  }
  if (ban_eos) {
    for (int32_t e : eos_ids) {
      if (e >= 0 && static_cast<size_t>(e) < vocab) logits[e] = -std::numeric_limits<float>::infinity();
    }
  }
  if (!search.do_sample || search.top_k == 1) return static_cast<int32_t>(argmax(logits, vocab));

  // Candidates sorted by descending logit (ties by index), cut to top_k.
  size_t k = vocab;
  if (search.top_k > 0 && static_cast<size_t>(search.top_k) < vocab) k = static_cast<size_t>(search.top_k);
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  auto by_logit = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k < vocab) {
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(k), order_.end(), by_logit);
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }
  // Softmax over the candidates at the temperature.
  const double inv_t = 1.0 / search.temperature;
  const float top = logits[order_[0]];
  if (!std::isfinite(top)) return order_[0];  // every candidate is -inf (or NaN): nothing to sample
  probs_.resize(k);
  double sum = 0.0;
  for (size_t i = 0; i < k; ++i) {
    const double e = std::exp((static_cast<double>(logits[order_[i]]) - top) * inv_t);
    probs_[i] = static_cast<float>(e);
    sum += e;
  }
  // Nucleus: the smallest prefix whose probability mass reaches top_p (at least one token).
  size_t n = k;
  if (search.top_p < 1.0) {
    double mass = 0.0;
    for (size_t i = 0; i < k; ++i) {
      mass += probs_[i] / sum;
      if (mass >= search.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  double kept = 0.0;
  for (size_t i = 0; i < n; ++i) kept += probs_[i];
  const double r = uniform() * kept;
  double acc = 0.0;
  for (size_t i = 0; i < n; ++i) {
    acc += probs_[i];
    if (r < acc) return order_[i];
  }
  return order_[n - 1];  // rounding at the very end of the range
}

}  // namespace mlora
