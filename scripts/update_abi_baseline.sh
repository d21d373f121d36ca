#!/usr/bin/env bash
# Refreshes the ABI baseline tests/abi/libmultilora.abi: libabigail's abidw over a libmultilora.so built with
# debug info (so abidiff sees function signatures, not only symbol names), restricted to what the public header
# declares and the library exports (the opaque handle structs stay declarations). Run it when an intended ABI
# change lands — bump MLORA_ABI_VERSION if the change is incompatible — and commit the result;
# scripts/check_abi.sh compares the current library against it.
#
# Usage: scripts/update_abi_baseline.sh [--out FILE] [LIB_DIR]
#   LIB_DIR's libmultilora.so (default $MLORA_LIB_DIR, else build-bind) is used when it has debug info;
#   otherwise the library is configured and built (RelWithDebInfo) in $MLORA_ABI_BUILD_DIR (default
#   build-bind-abi), incrementally after the first time. --out writes elsewhere (check_abi.sh uses it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
out="tests/abi/libmultilora.abi"
if [[ "${1:-}" == --out ]]; then
  out="$2"
  shift 2
fi
lib_dir="${1:-${MLORA_LIB_DIR:-$here/build-bind}}"
lib="$lib_dir/libmultilora.so"
if [[ -f "$lib" ]] && readelf -S "$lib" 2>/dev/null | grep -q '\.debug_info'; then
  dbg="$lib"
else
  build="${MLORA_ABI_BUILD_DIR:-$here/build-bind-abi}"
  mkdir -p "$build"
  log="$build/abi-build.log"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLORA_BUILD_TESTS=OFF -DMLORA_BUILD_PYTHON=OFF >"$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  cmake --build "$build" -j2 >>"$log" 2>&1 || { tail -50 "$log" >&2; exit 1; }
  dbg="$build/libmultilora.so"
fi
mkdir -p "$(dirname "$out")"
# Absolute source paths are made relative so the file does not depend on where the tree was checked out.
abidw --no-corpus-path --no-show-locs --type-id-style hash --headers-dir include/multilora --drop-private-types \
  --exported-interfaces-only "$dbg" | sed "s|$here/|./|g" >"$out"
echo "update_abi_baseline: wrote $out from $dbg ($(grep -c "<elf-symbol name='mlora_" "$out") mlora_* functions)"
