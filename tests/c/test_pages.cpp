// io/pages.h: zeroed_pages() maps zeroed, writable memory; a mapping of at least a huge page is aligned to it and
// advised MADV_HUGEPAGE (the kernel's "hg" VmFlag in /proc/self/smaps), a smaller one is not; releasing the
// last reference unmaps it. Whether the kernel then backs it with huge pages depends on the machine (printed,
// not asserted): the advice is what the code controls.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "io/pages.h"

using mlora_test::check;

namespace {

struct Vma {
  bool found = false;
  uintptr_t begin = 0, end = 0;
  std::string flags;           // VmFlags
  long long anon_huge_kb = 0;  // AnonHugePages
};

// The /proc/self/smaps entry that contains `addr`.
Vma vma_of(const void* addr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  Vma v, cur;
  bool in = false;
  while (std::getline(smaps, line)) {
    unsigned long long b = 0, e = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &b, &e) == 2 && line.find(':') > line.find(' ')) {
      if (in) return cur;
      in = a >= b && a < e;
      cur = Vma{in, static_cast<uintptr_t>(b), static_cast<uintptr_t>(e), "", 0};
    } else if (in && line.rfind("VmFlags:", 0) == 0) {
      cur.flags = line.substr(8);
    } else if (in && line.rfind("AnonHugePages:", 0) == 0) {
      cur.anon_huge_kb = std::atoll(line.c_str() + 14);
    }
  }
  return in ? cur : v;
}

bool has_flag(const std::string& flags, const std::string& f) {
  std::istringstream in(flags);
  std::string w;
  while (in >> w) {
    if (w == f) return true;
  }
  return false;
}

bool thp_built_in() {
  struct stat st;
  return ::stat("/sys/kernel/mm/transparent_hugepage/enabled", &st) == 0;
}

}  // namespace

int main() {
  const size_t huge = mlora::kHugePageBytes;
  const bool thp = thp_built_in();
  const std::vector<size_t> sizes = {0, 1, 4096, 100000, huge - 1, huge, huge + 1, 5 * huge + 123};
  for (size_t bytes : sizes) {
    const std::string what = "zeroed_pages(" + std::to_string(bytes) + ")";
    uintptr_t begin = 0;
    {
      std::shared_ptr<void> p = mlora::zeroed_pages(bytes);
      begin = reinterpret_cast<uintptr_t>(p.get());
      check(p != nullptr, what + " is not null");
      check(begin % 4096 == 0, what + " is page-aligned");
      if (bytes >= huge) check(begin % huge == 0, what + " is aligned to a huge page");
      auto* u = static_cast<volatile uint8_t*>(p.get());
      bool zero = true;
      for (size_t i = 0; i < bytes; ++i) zero &= u[i] == 0;
      check(zero, what + " is zeroed");
      for (size_t i = 0; i < bytes; i += 997) u[i] = static_cast<uint8_t>(i * 31 + 7);
      if (bytes) u[bytes - 1] = 0x5a;
      bool kept = true;
      for (size_t i = 0; i + 1 < bytes; i += 997) kept &= u[i] == static_cast<uint8_t>(i * 31 + 7);
      if (bytes) kept &= u[bytes - 1] == 0x5a;
      check(kept, what + " is writable and keeps what was written");
      const Vma v = vma_of(p.get());
      check(v.found, what + " lies in a mapping of /proc/self/smaps");
      if (bytes) check(v.found && v.end >= begin + bytes, what + "'s mapping covers all of it");
      if (thp) {
        check(has_flag(v.flags, "hg") == (bytes >= huge),
              what + (bytes >= huge ? " is advised MADV_HUGEPAGE" : " is not advised huge pages") +
                  " (VmFlags:" + v.flags + ")");
      }
      if (bytes >= huge) {
        std::printf("%s: AnonHugePages %lld kB of its mapping after touching it\n", what.c_str(), v.anon_huge_kb);
      }
    }
    const Vma after = vma_of(reinterpret_cast<const void*>(begin));
    check(!after.found || !has_flag(after.flags, "hg"), what + " is unmapped when the last reference goes");
  }
  // Two references to one mapping: the first release leaves it mapped.
  std::shared_ptr<void> a = mlora::zeroed_pages(huge);
  std::shared_ptr<void> b = a;
  a.reset();
  check(vma_of(b.get()).found, "a mapping stays while a reference remains");
  std::printf("%d passed, %d failed\n", mlora_test::g_passed, mlora_test::g_failed);
  return mlora_test::g_failed ? 1 : 0;
}
