#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the core: builds libmultilora, the C tests and the
# Python extension with -fsanitize=address,undefined (CMake option MLORA_SANITIZE=ON, gcc) into
# build-rel-asan, then runs
#   1. the C suite (ctest) with LeakSanitizer on (detect_leaks=1): must be clean;
#   2. the Python suite (pytest) with libasan preloaded into the (uninstrumented) interpreter.
#
# Why the options (see docs/errors.md "Sanitizers" for the longer story):
#   - Python is not built with ASan, so libasan must come first in the process: LD_PRELOAD=$(gcc
#     -print-file-name=libasan.so). libstdc++ is preloaded too: python3 is a C program, so libstdc++
#     arrives later with the extension and ASan's __cxa_throw interceptor finds no real function
#     ("CHECK failed: asan_interceptors.cpp:320 real___cxa_throw != 0" at the first C++ throw).
#     libubsan needs no preload (it is linked into the extension).
#   - CPython, numpy, tokenizers/orjson (Rust) and onnxruntime's Python module keep allocations until
#     exit by design, so the Python run uses detect_leaks=0 unless MLORA_SANITIZE_PY_LEAKS=1 (then
#     scripts/sanitize/lsan.supp filters those modules out; no multilora frame is ever suppressed).
#   - ONNX Runtime is dlopen'ed and uninstrumented; its process-lifetime singletons are suppressed by
#     scripts/sanitize/lsan.supp (leak:libonnxruntime.so) for the C suite as well.
#   - alloc_dealloc_mismatch=0: libonnxruntime and the Python wheels mix new[]/delete across
#     uninstrumented boundaries that ASan cannot pair up; it is not our code.
#
# Usage: scripts/sanitize.sh [--c-only|--py-only] [extra pytest args]
# Runtime (2 cores, shared with other jobs, 2026-11-23): build from scratch ~5 min (incremental < 1 min),
# ctest ~3 s, pytest ~40 s (268 tests) — about 6 min in all. Not part of scripts/test.sh for the build
# time; run it before a release and after touching csrc/. MLORA_SANITIZE_PY_LEAKS=1 (LSan on the Python
# suite, with scripts/sanitize/lsan.supp) costs nothing extra and is clean too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
py="${MLORA_PYTHON:-python3}"
# The interpreter itself, not a wrapper script (a pyenv shim is bash: preloading libasan into it makes
# LeakSanitizer report bash's own leaks and the shim give up).
py="$("$py" -c 'import sys; print(sys.executable)')"
build="${MLORA_SANITIZE_BUILD:-$here/build-rel-asan}"
only="${1:-}"
[[ "$only" == --c-only || "$only" == --py-only ]] && shift || only=""

step() { printf '\n==== %s ====\n' "$*"; }
t0=$SECONDS

step "build (ASan+UBSan) in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLORA_SANITIZE=ON -DMLORA_BUILD_TESTS=ON \
  -DMLORA_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$py" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" -j2
echo "build: $((SECONDS - t0)) s"

supp="$here/scripts/sanitize/lsan.supp"
common="abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0

if [[ "$only" != --py-only ]]; then
  step "C suite (ctest), LeakSanitizer on"
  t1=$SECONDS
  ASAN_OPTIONS="$common:detect_leaks=1:alloc_dealloc_mismatch=0" LSAN_OPTIONS="suppressions=$supp:print_suppressions=0" \
    ctest --test-dir "$build" --output-on-failure || status=1
  echo "ctest: $((SECONDS - t1)) s"
fi

if [[ "$only" != --c-only ]]; then
  step "Python suite (pytest) on the instrumented extension"
  t2=$SECONDS
  # A package folder laid out as the wheel: the pure-Python sources, the instrumented _core, libmultilora.so.N
  # (the one file its soname names) and the headers.
  pkg="$build/pypkg"
  rm -rf "$pkg" && mkdir -p "$pkg/multilora/include/multilora"
  cp -r python/multilora/. "$pkg/multilora/"
  lib="$(readlink -f "$build/libmultilora.so")"
  cp "$build"/_core*.so "$lib" "$pkg/multilora/"
  cp include/multilora/multilora.h include/multilora/multilora.hpp "$pkg/multilora/include/multilora/"
  leaks="${MLORA_SANITIZE_PY_LEAKS:-0}"
  (
    cd tests/python
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
      PYTHONPATH="$pkg" PYTHONMALLOC=malloc \
      ASAN_OPTIONS="$common:detect_leaks=$leaks:alloc_dealloc_mismatch=0:detect_odr_violation=0" \
      LSAN_OPTIONS="suppressions=$supp:print_suppressions=0" \
      "$py" -m pytest -q -p no:cacheprovider "${@:-.}"
  ) || status=1
  echo "pytest: $((SECONDS - t2)) s"
fi

echo "sanitize.sh: total $((SECONDS - t0)) s, status $status"
exit $status
