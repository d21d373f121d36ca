// The fused kernel's per-row arithmetic alone (csrc/kernels/lora_slot_matmul.*), no ONNX Runtime: how long one
// decode row (one token, its own slot's A [in, r] and B [r, out]) takes when the slot comes from memory (a
// different slot per row, over more slots than the caches hold) and when it is cached (the same slot every
// row), for each slot dtype (int8 with its block scales, counted in the bytes); slots from memory twice: on
// plain 4 KiB pages (std::vector) and on the slot table's huge-page mapping (io/pages.h). One thread; the best
// of --repeats passes per figure, and GB/s = the slot bytes read per row / that time. Built with the CTest
// targets (MLORA_BUILD_TESTS=ON) as build/.../kernel_rows:
//
//   kernel_rows [--in 768] [--out 768] [--rank 16] [--slots 1024] [--repeats 8]
//
// Use it to compare kernel changes on one machine in one run (docs/notes.md, 2026-12-07); the model-level
// figures are benchmarks/bench_batching_llm.py's.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "io/pages.h"
#include "kernels/lora_slot_matmul.h"
#include "multilora/multilora.h"

namespace {

struct Args {
  int64_t in = 768, out = 768, rank = 16, slots = 1024;
  int repeats = 8;
};

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (v <= 0) return false;
    if (k == "--in") {
      a.in = v;
    } else if (k == "--out") {
      a.out = v;
    } else if (k == "--rank") {
      a.rank = v;
    } else if (k == "--slots") {
      a.slots = v;
    } else if (k == "--repeats") {
      a.repeats = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return argc % 2 == 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    std::fprintf(stderr, "usage: %s [--in N] [--out N] [--rank N] [--slots N] [--repeats N]\n", argv[0]);
    return 2;
  }
  const int64_t per_slot = a.in * a.rank + a.rank * a.out;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  std::vector<float> x(static_cast<size_t>(a.in)), y(static_cast<size_t>(a.out));
  for (float& v : x) v = dist(rng);
  std::vector<float> w32(static_cast<size_t>(per_slot * a.slots));
  for (float& v : w32) v = dist(rng);
  std::vector<uint16_t> w16(w32.size());
  for (size_t i = 0; i < w32.size(); ++i) {  // the top half of the float: a valid bfloat16 and float16 pattern
    uint32_t bits;
    std::memcpy(&bits, &w32[i], sizeof(bits));
    w16[i] = static_cast<uint16_t>(bits >> 16 & 0x3fff);  // small exponent: a normal float16 too
  }
  // int8 slots: the values, then per slot A's scales [ceil(in/32), r] and B's [ceil(r/32), out] (float32).
  std::vector<int8_t> w8(w32.size());
  for (size_t i = 0; i < w32.size(); ++i) w8[i] = static_cast<int8_t>(static_cast<int>(w32[i] * 2540.0f));
  const int64_t a_sc = (a.in + 31) / 32 * a.rank, b_sc = (a.rank + 31) / 32 * a.out;
  std::vector<float> scales(static_cast<size_t>((a_sc + b_sc) * a.slots), 1.0f / 127.0f);
  std::vector<int64_t> order(static_cast<size_t>(a.slots));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  // The same bytes on huge pages (where the kernel grants them; the slot table's allocation).
  auto huge = [](const void* src, size_t bytes) {
    std::shared_ptr<void> p = mlora::zeroed_pages(bytes);
    std::memcpy(p.get(), src, bytes);
    return p;
  };
  const auto h32 = huge(w32.data(), w32.size() * 4), h16 = huge(w16.data(), w16.size() * 2),
             h8 = huge(w8.data(), w8.size()), hs = huge(scales.data(), scales.size() * 4);
  struct Kind {
    const char* name;
    int32_t dtype;
    const void* w[2];  // 4 KiB pages, huge pages
    size_t esize;
    const float* scales[2];  // int8 only
  };
  const Kind kinds[] = {
      {"float32", MLORA_DTYPE_FLOAT32, {w32.data(), h32.get()}, 4, {nullptr, nullptr}},
      {"float16", MLORA_DTYPE_FLOAT16, {w16.data(), h16.get()}, 2, {nullptr, nullptr}},
      {"bfloat16", MLORA_DTYPE_BFLOAT16, {w16.data(), h16.get()}, 2, {nullptr, nullptr}},
      {"int8", MLORA_DTYPE_INT8, {w8.data(), h8.get()}, 1, {scales.data(), static_cast<const float*>(hs.get())}}};
  std::printf("in %lld  rank %lld  out %lld  slots %lld (%.1f MB of float32 slots)  best of %d\n",
              static_cast<long long>(a.in), static_cast<long long>(a.rank), static_cast<long long>(a.out),
              static_cast<long long>(a.slots), static_cast<double>(w32.size()) * 4 / 1e6, a.repeats);
  std::printf("%-9s %16s %6s %16s %6s %14s %6s\n", "slots", "4K pages us/row", "GB/s", "huge pages us/row", "GB/s",
              "cached us/row", "GB/s");
  for (const Kind& k : kinds) {
    double best[3] = {1e30, 1e30, 1e30};  // memory on 4 KiB pages, memory on huge pages, cached
    for (int rep = 0; rep < a.repeats; ++rep) {
      for (int mode = 0; mode < 3; ++mode) {
        const bool cached = mode == 2;
        const int pages = mode == 1 ? 1 : 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < a.slots; ++i) {
          const int64_t s = cached ? 0 : order[static_cast<size_t>(i)];
          const char* base = static_cast<const char*>(k.w[pages]) + static_cast<size_t>(s * per_slot) * k.esize;
          const char* b = base + static_cast<size_t>(a.in * a.rank) * k.esize;
          const float* sa = k.scales[pages] ? k.scales[pages] + s * (a_sc + b_sc) : nullptr;
          const float* sb = sa ? sa + a_sc : nullptr;
          if (!mlora::lora_slot_rows(k.dtype, x.data(), base, b, y.data(), 1, a.in, a.rank, a.out, true, sa, sb)) {
            return 1;
          }
        }
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best[mode] = std::min(best[mode], sec / static_cast<double>(a.slots));
      }
    }
    const double bytes = static_cast<double>(per_slot) * static_cast<double>(k.esize) +
                         (k.scales[0] ? static_cast<double>(a_sc + b_sc) * 4 : 0.0);
    std::printf("%-9s %16.2f %6.1f %16.2f %6.1f %14.2f %6.1f\n", k.name, best[0] * 1e6, bytes / best[0] / 1e9,
                best[1] * 1e6, bytes / best[1] / 1e9, best[2] * 1e6, bytes / best[2] / 1e9);
  }
  volatile float sink = y[0];  // keep the results alive
  (void)sink;
  return 0;
}
