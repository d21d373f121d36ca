// A read-only memory mapping of a whole regular file. Non-copyable, movable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mlora {

class MappedFile {
 public:
  // Maps `path` read-only. Throws NOT_FOUND (no such file), IO (not a regular file — directory, FIFO,
  // device — or open/fstat/mmap failed; the message names the path and strerror). An empty file maps
  // to size 0 and data() == nullptr.
  static MappedFile open(const std::string& path);
  // Same, but when `path` is a directory sets *is_directory and returns an empty MappedFile instead of failing
  // (a caller that serves directories otherwise, e.g. PEFT folders, needs no stat of its own).
  static MappedFile open(const std::string& path, bool* is_directory);

  MappedFile() noexcept;
  ~MappedFile();
  MappedFile(MappedFile&&) noexcept;
  MappedFile& operator=(MappedFile&&) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const noexcept;
  size_t size() const noexcept;
  const std::string& path() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlora
