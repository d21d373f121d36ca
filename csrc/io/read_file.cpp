#include "io/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/fd.h"
#include "util/error.h"

namespace mlora {

size_t read_regular_file(const std::string& path, size_t cap, const std::function<char*(size_t)>& allocate) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO without a writer must not block
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO,
         "cannot read '" + path + "': " + std::strerror(err));
  }
  FdCloser closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot stat '" + path + "': " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(MLORA_STATUS_IO, "cannot read '" + path + "': it is " + file_kind(st.st_mode) + ", not a regular file");
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > cap) {
    fail(MLORA_STATUS_IO, "cannot read '" + path + "': " + std::to_string(st.st_size) + " bytes is over the " +
                              std::to_string(cap) + "-byte limit for this file");
  }
  // A regular file: blocking reads again.
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  const size_t size = static_cast<size_t>(st.st_size);
  char* out = allocate(size);
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, out + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      fail(MLORA_STATUS_IO, "cannot read '" + path + "': " + std::strerror(err));
    }
    if (n == 0) {
      fail(MLORA_STATUS_IO, "cannot read '" + path + "': it shrank from " + std::to_string(size) + " to " +
                                std::to_string(got) + " bytes while being read");
    }
    got += static_cast<size_t>(n);
  }
  return got;
}

std::string read_small_file(const std::string& path, size_t cap) {
  std::string text;
  read_regular_file(path, cap, [&](size_t size) {
    text.resize(size);
    return &text[0];
  });
  return text;
}

}  // namespace mlora
