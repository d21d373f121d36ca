// The C++ unit tests' one assertion: counts passes and failures and names each failure on stderr; main()
// prints the counts and fails when any check did (CTest reads the exit status).
#pragma once

#include <cstdio>
#include <string>

namespace mlora_test {

inline int g_passed = 0, g_failed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  std::fprintf(stderr, "FAIL %s\n", what.c_str());
}

}  // namespace mlora_test
