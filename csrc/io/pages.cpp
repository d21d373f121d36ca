#include "io/pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>

namespace mlora {

namespace {

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

std::shared_ptr<void> zeroed_pages(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const bool huge = bytes >= kHugePageBytes;
  const size_t align = huge ? kHugePageBytes : page;
  const size_t len = round_up(bytes ? bytes : 1, align);
  if (len < bytes) throw std::bad_alloc();  // size_t overflow
  // Over-map by one alignment, then unmap the unaligned head and the tail beyond `len`.
  const size_t span = len + (huge ? align : 0);
  if (span < len) throw std::bad_alloc();
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto* start = static_cast<uint8_t*>(raw);
  if (huge) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(raw);
    start = static_cast<uint8_t*>(raw) + (round_up(at, align) - at);
    const size_t head = static_cast<size_t>(start - static_cast<uint8_t*>(raw));
    if (head) ::munmap(raw, head);
    const size_t tail = span - head - len;
    if (tail) ::munmap(start + len, tail);
#ifdef MADV_HUGEPAGE
    ::madvise(start, len, MADV_HUGEPAGE);  // advice: fails harmlessly where THP is compiled out
#endif
  }
  return std::shared_ptr<void>(start, [len](void* p) { ::munmap(p, len); });
}

}  // namespace mlora
