// Small pieces shared by the file readers of io/: a descriptor closed on scope exit and the words that name a
// file that is not a regular one (used in IO messages: "cannot read 'x': it is a FIFO, not a regular file").
#pragma once

#include <sys/stat.h>
#include <unistd.h>

namespace mlora {

// Closes a descriptor on scope exit (-1 = nothing to close).
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

inline const char* file_kind(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

}  // namespace mlora
