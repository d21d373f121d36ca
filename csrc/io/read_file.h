// Reading a small whole file (a JSON config) with the checks the mapped files get: opened without
// blocking, regular files only, size capped.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace mlora {

// The largest config file read whole (genai_config.json, adapter_config.json): 16 MiB.
constexpr size_t kMaxConfigFileSize = size_t{16} << 20;

// Reads `path` into memory. Throws NOT_FOUND (no such file), IO (a directory, FIFO, device, socket — named in
// the message — larger than `cap` bytes, or open/read failed; the message names the path and strerror).
// A FIFO never blocks: the file is opened with O_NONBLOCK and its type checked before any read.
std::string read_small_file(const std::string& path, size_t cap = kMaxConfigFileSize);

// The same checks, then reads the whole file into allocate(size) (called once, with the size fstat gave).
// A file that shrinks while being read is an IO error; bytes appended meanwhile are not read.
size_t read_regular_file(const std::string& path, size_t cap, const std::function<char*(size_t)>& allocate);

}  // namespace mlora
