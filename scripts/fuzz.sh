#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang + ASan + UBSan) and runs each from its committed seed
# corpus for MLORA_FUZZ_SECONDS (default 20) — the short run scripts/test.sh does. Exit code 1 on any crash,
# sanitizer report or property violation (the reproducer is left as build-rel-fuzz/crash-*).
#
# Longer runs (see docs/errors.md "Fuzzing"):
#   MLORA_FUZZ_SECONDS=3600 MLORA_FUZZ_JOBS=2 scripts/fuzz.sh       # an hour per target, two workers
#   scripts/fuzz.sh fuzz_genai_config                               # one target
# Knobs: MLORA_FUZZ_SECONDS, MLORA_FUZZ_JOBS (parallel workers, default 1), MLORA_FUZZ_BUILD (build dir,
# default build-rel-fuzz), CC/CXX (default clang-14/clang++-14), MLORA_SKIP_APT=1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
seconds="${MLORA_FUZZ_SECONDS:-20}"
jobs="${MLORA_FUZZ_JOBS:-1}"
build="${MLORA_FUZZ_BUILD:-$here/build-rel-fuzz}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_adapter fuzz_genai_config fuzz_safetensors)
export CC="${CC:-clang-14}" CXX="${CXX:-clang++-14}"

# clang 14 + its runtime (libclang_rt.fuzzer lives in libclang-rt-14-dev on Debian 12).
if ! command -v "$CXX" >/dev/null || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$CXX" -x c++ -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
  if [[ "${MLORA_SKIP_APT:-0}" == 1 ]]; then
    echo "fuzz.sh: $CXX cannot build libFuzzer targets; install clang-14 libclang-rt-14-dev" >&2
    exit 1
  fi
  echo "fuzz.sh: installing clang-14 libclang-rt-14-dev"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null
fi

py="${MLORA_PYTHON:-$(command -v python3)}"
cmake -S tests/fuzz -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython3_EXECUTABLE="$py" >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}"

extra=()
[[ "$jobs" -gt 1 ]] && extra=(-jobs="$jobs" -workers="$jobs")  # workers log to $build/fuzz-N.log
status=0
for t in "${targets[@]}"; do
  seeds="$here/tests/fuzz/corpus/${t#fuzz_}"
  work="$build/corpus/${t#fuzz_}"  # grows across runs; not committed
  mkdir -p "$work"
  log="$build/$t.log"
  echo "---- $t: ${seconds}s from $(ls "$seeds" | wc -l) seeds ($work)"
  # -rss_limit_mb: a parser that tries to allocate what a header claims is a finding, not an OOM of the box.
  # -max_len: 64 KiB for the binary adapter format (seeds are < 4 KiB; longer inputs add time, not coverage);
  # 1 MiB for the JSON readers, where nesting depth matters (deep nesting once overflowed the stack), with a
  # dictionary of JSON tokens and the keys the readers look up.
  max_len=65536
  dict=()
  if [[ "$t" == fuzz_genai_config || "$t" == fuzz_safetensors ]]; then
    max_len=1048576
    dict=(-dict="$here/tests/fuzz/json.dict")
  fi
  if (cd "$build" && "./$t" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$max_len" -timeout=10 \
        "${dict[@]}" "${extra[@]}" -print_final_stats=1 "$work" "$seeds" >"$log" 2>&1); then
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)|Done [0-9]+ runs" "$log" | tr '\n' ' '
    echo
  else
    status=1
    echo "FAIL $t (log $log):"
    grep -E -A30 "ERROR: |==ERROR|fuzz_(adapter|genai_config): |SUMMARY|runtime error" "$log" | head -60
    ls "$build"/crash-* "$build"/oom-* "$build"/timeout-* 2>/dev/null || true
  fi
done
exit $status
