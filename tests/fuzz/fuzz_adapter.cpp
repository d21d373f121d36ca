// libFuzzer target: the .onnx_adapter reader (Adapter::open_memory) on arbitrary bytes.
//
// Properties checked beyond "no crash, no sanitizer report":
//   - a failure is an mlora::Error with a status of FORMAT (the only status a buffer can earn) and a
//     non-empty message naming the buffer's label;
//   - on success every parameter's bytes are readable (touched, so ASan sees an out-of-bounds view),
//     nbytes == element count * element size, and data is aligned to the element size;
//   - an accepted adapter that our writer can express (no bool parameters) survives a round trip:
//     serialize_adapter(params) reads back to the same names, dtypes, dims and bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "adapter/adapter.h"
#include "util/dtype.h"
#include "util/error.h"

namespace {

[[noreturn]] void die(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_adapter: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

uint64_t touch(const mlora::Param& p) {
  uint64_t sum = 0;
  const auto* b = static_cast<const uint8_t*>(p.data);
  for (size_t i = 0; i < p.nbytes; ++i) sum += b[i];
  return sum;
}

void check(const mlora::Adapter& a) {
  for (const mlora::Param& p : a.params()) {
    const size_t esize = mlora::dtype_size(p.dtype);
    if (esize == 0) die("accepted unknown dtype", p.name);
    size_t n = 1;
    for (int64_t d : p.dims) {
      if (d < 0) die("accepted negative dim", p.name);
      n *= static_cast<size_t>(d);
    }
    if (n * esize != p.nbytes) die("nbytes differs from dims", p.name);
    if (p.nbytes && !p.data) die("null data", p.name);
    if (p.data && reinterpret_cast<uintptr_t>(p.data) % esize != 0) die("misaligned data", p.name);
    if (a.find(p.name) != &p) die("find() disagrees with params()", p.name);
    volatile uint64_t sink = touch(p);
    (void)sink;
  }
}

void round_trip(const mlora::Adapter& a) {
  std::vector<mlora::ParamView> views;
  for (const mlora::Param& p : a.params()) {
    if (p.dtype == MLORA_DTYPE_BOOL) return;  // readable, but the writer refuses what ORT's loader refuses
    views.push_back({std::string(p.name), p.dtype, p.dims.vec(), p.data, p.nbytes});
  }
  std::vector<uint8_t> bytes;
  try {
    bytes = mlora::serialize_adapter(views, a.adapter_version(), a.model_version());
  } catch (const mlora::Error& e) {
    die("serialize_adapter refused an adapter the reader accepted", e.what());
  }
  std::shared_ptr<const mlora::Adapter> b;
  try {
    b = mlora::Adapter::open_memory(bytes.data(), bytes.size(), "round-trip");
  } catch (const mlora::Error& e) {
    die("reader refused what serialize_adapter wrote", e.what());
  }
  if (b->params().size() != a.params().size() || b->adapter_version() != a.adapter_version() ||
      b->model_version() != a.model_version()) {
    die("round trip changed the header or the parameter count", a.source());
  }
  for (size_t i = 0; i < a.params().size(); ++i) {
    const mlora::Param& p = a.params()[i];
    const mlora::Param& q = b->params()[i];
    if (p.name != q.name || p.dtype != q.dtype || p.dims != q.dims || p.nbytes != q.nbytes ||
        (p.nbytes && std::memcmp(p.data, q.data, p.nbytes) != 0)) {
      die("round trip changed a parameter", p.name);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<const mlora::Adapter> adapter;
  try {
    adapter = mlora::Adapter::open_memory(data, size, "fuzz");
  } catch (const mlora::Error& e) {
    if (e.status() != MLORA_STATUS_FORMAT) die("unexpected status", std::to_string(e.status()) + ": " + e.what());
    if (std::strstr(e.what(), "adapter 'fuzz'") == nullptr) die("message does not name the buffer", e.what());
    return 0;
  }
  check(*adapter);
  round_trip(*adapter);
  return 0;
}
