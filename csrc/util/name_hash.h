// Hashing and looking up tensor names (adapter parameters, model LoRA inputs) on the adapter load path.
// One hash function on both sides: an adapter computes each parameter's hash once, and the model's table is
// probed with it, so a load hashes every name once and compares the bytes of a name once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace mlora {

// 64-bit hash of `s`, eight bytes at a time (tensor names are tens of bytes; a byte-at-a-time hash of
// every name of every load was a visible part of it). Not for untrusted keys in the worst case: collisions
// only cost comparisons (every lookup compares the names).
inline uint64_t name_hash(std::string_view s) noexcept {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = 0x243F6A8885A308D3ull ^ (n * kMul);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {  // the last 1..7 bytes, as the low bytes of a word (whole-word loads: no copy through memory)
    uint64_t w = 0;
    if (s.size() >= 8) {
      std::memcpy(&w, p + n - 8, 8);
      w >>= 8 * (8 - n);
    } else {
      for (size_t k = 0; k < n; ++k) w |= static_cast<uint64_t>(static_cast<unsigned char>(p[k])) << (8 * k);
    }
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

// An open-addressing table from names to positions 0..n-1 (the names live elsewhere: `name_of(i)` reads
// them). A power-of-two capacity of at least twice the count keeps probe runs short.
class NameTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // Empties the table and sizes it for `count` names.
  void reset(size_t count) {
    size_t cap = 8;
    while (cap < 2 * count) cap *= 2;
    slots_.assign(cap, Slot{0, kNone});
    mask_ = cap - 1;
  }

  // Position of a name equal to `name` (hash `hash`) already inserted, else inserts `index` and returns kNone.
  template <class NameOf>
  uint32_t insert(std::string_view name, uint64_t hash, uint32_t index, NameOf&& name_of) {
    for (size_t s = static_cast<size_t>(hash) & mask_;; s = (s + 1) & mask_) {
      Slot& slot = slots_[s];
      if (slot.index == kNone) {
        slot = Slot{tag(hash), index};
        return kNone;
      }
      if (slot.tag == tag(hash) && name_of(slot.index) == name) return slot.index;
    }
  }

  // Position of `name` (hash `hash`), or kNone.
  template <class NameOf>
  uint32_t find(std::string_view name, uint64_t hash, NameOf&& name_of) const noexcept {
    if (slots_.empty()) return kNone;
    for (size_t s = static_cast<size_t>(hash) & mask_;; s = (s + 1) & mask_) {
      const Slot& slot = slots_[s];
      if (slot.index == kNone) return kNone;
      if (slot.tag == tag(hash) && name_of(slot.index) == name) return slot.index;
    }
  }

 private:
  struct Slot {
    uint32_t tag;    // the hash's upper half: most mismatches end here, without reading the name
    uint32_t index;  // kNone: empty
  };
  static uint32_t tag(uint64_t hash) noexcept { return static_cast<uint32_t>(hash >> 32); }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

}  // namespace mlora
