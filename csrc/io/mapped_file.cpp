#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "io/fd.h"
#include "util/error.h"

namespace mlora {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

struct MappedFile::Impl {
  std::string path;
  void* addr = nullptr;  // nullptr for an empty file
  size_t size = 0;

  ~Impl() {
    if (addr) ::munmap(addr, size);
  }
};

MappedFile MappedFile::open(const std::string& path) { return open(path, nullptr); }

MappedFile MappedFile::open(const std::string& path, bool* is_directory) {
  // O_NONBLOCK: opening a FIFO with no writer would otherwise block forever; for regular files it changes
  // nothing (and we never read() anyway). The file type is checked right after.
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    // A directory that cannot be opened (no read permission) is still a directory.
    struct stat st;
    if (is_directory && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      *is_directory = true;
      return MappedFile();
    }
    fail(err == ENOENT ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO, "cannot open '" + path + "': " + errno_text(err));
  }
  FdCloser closer{fd};

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot stat '" + path + "': " + errno_text(err));
  }
  if (is_directory && S_ISDIR(st.st_mode)) {
    *is_directory = true;
    return MappedFile();
  }
  if (!S_ISREG(st.st_mode)) {
    fail(MLORA_STATUS_IO, "cannot map '" + path + "': it is " + file_kind(st.st_mode) + ", not a regular file");
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > std::numeric_limits<size_t>::max()) {
    fail(MLORA_STATUS_IO, "cannot map '" + path + "': size " + std::to_string(st.st_size) + " is not addressable");
  }

  MappedFile file;
  file.impl_ = std::make_unique<Impl>();
  file.impl_->path = path;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return file;  // mmap of length 0 is an error; an empty file is simply empty

  // MAP_PRIVATE + PROT_READ: pages come from the page cache and are shared by every process mapping the file.
  // The file must not be truncated while mapped (reading past the new end raises SIGBUS), like any mmap reader.
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot map '" + path + "' (" + std::to_string(size) + " bytes): " + errno_text(err));
  }
  file.impl_->addr = addr;
  file.impl_->size = size;
  return file;
}

MappedFile::MappedFile() noexcept = default;
MappedFile::~MappedFile() = default;
MappedFile::MappedFile(MappedFile&&) noexcept = default;
MappedFile& MappedFile::operator=(MappedFile&&) noexcept = default;

const uint8_t* MappedFile::data() const noexcept { return impl_ ? static_cast<const uint8_t*>(impl_->addr) : nullptr; }

size_t MappedFile::size() const noexcept { return impl_ ? impl_->size : 0; }

const std::string& MappedFile::path() const noexcept {
  static const std::string kNoPath;  // default-constructed or moved-from
  return impl_ ? impl_->path : kNoPath;
}

}  // namespace mlora
