// libFuzzer target: the safetensors reader behind PEFT folder loading (peft::SafetensorsFile::open).
//
// The reader maps a file, so each input is written to an anonymous memory file and opened through
// /proc/self/fd. Properties beyond "no crash, no sanitizer report": a failure is an mlora::Error with
// status FORMAT naming the file; a success yields tensors whose data lies inside the input, whose byte
// size matches shape x dtype size when the dtype is known, and which do not overlap.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "peft/safetensors.h"
#include "util/error.h"

namespace {

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_safetensors: %s: %s\n", what, detail.c_str());
  std::abort();
}

void check(const mlora::peft::SafetensorsFile& f, size_t size) {
  std::vector<std::pair<const uint8_t*, const uint8_t*>> spans;
  for (const auto& t : f.tensors()) {
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0) die("negative dim", t.name);
      if (d != 0 && count > UINT64_MAX / static_cast<uint64_t>(d)) die("shape overflow accepted", t.name);
      count *= static_cast<uint64_t>(d);
    }
    const size_t esize = mlora::peft::st_dtype_size(t.dtype);
    if (esize && count * esize != t.nbytes) die("byte size mismatch accepted", t.name);
    if (t.nbytes > size) die("tensor larger than the file", t.name);
    if (t.nbytes) {
      if (!t.data) die("null data", t.name);
      spans.emplace_back(t.data, t.data + t.nbytes);
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) die("overlapping tensors accepted", f.path());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz_safetensors", 0);
  if (fd < 0) die("memfd_create", "failed");
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) die("write", "failed");
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    auto file = mlora::peft::SafetensorsFile::open(path);
    check(file, size);
  } catch (const mlora::Error& e) {
    const std::string msg = e.what();
    if (e.status() != MLORA_STATUS_FORMAT) die("status other than FORMAT", msg);
    if (msg.find(path) == std::string::npos) die("message does not name the file", msg);
  }
  close(fd);
  return 0;
}
