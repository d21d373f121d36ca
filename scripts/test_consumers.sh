#!/usr/bin/env bash
# Tests the C install as another project uses it: `cmake --install` of a build tree into a fresh prefix, then
# tests/consumers/consumer.c built once through find_package(multilora) (tests/consumers/cmake) and once with
# pkg-config, each run and its printed values checked against references computed here:
#   - the installed layout: libmultilora.so.<major version> whose soname equals the wheel's file (multilora.get_library()),
#     the libmultilora.so link, both headers, multiloraConfig.cmake + version file, multilora.pc;
#   - ABI version = the header's; a missing model file gives MLORA_STATUS_NOT_FOUND (or _IO);
#   - where the library finds ONNX Runtime by itself (the build must record no path: MLORA_DEFAULT_ORT_LIBRARY=none):
#     nothing anywhere -> the error lists every place looked in; MULTILORA_ORT_LIBRARY -> that file, and a tiny
#     model's LoRA input count equals the Python package's; a copy next to libmultilora -> that copy; loaded
#     from a Python process (ctypes) -> that interpreter's onnxruntime package.
# Usage: scripts/test_consumers.sh BUILD_DIR [PYTHON]   (BUILD_DIR: a configured + built tree, e.g. build/ctest;
# PYTHON: an interpreter with the multilora package installed)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "$1" && pwd)"
py="${2:-${PYTHON:-python3}}"
out="$build/consumers"
prefix="$out/prefix"
rm -rf "$out" && mkdir -p "$out"
fail() {
  echo "test_consumers: FAILED: $*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
header="$here/include/multilora/multilora.h"
define() { sed -nE "s/^#define $1 ([0-9]+).*/\1/p" "$header"; }

echo "test_consumers: cmake --install $build --prefix $prefix --component devel"
cmake --install "$build" --prefix "$prefix" --component devel >"$out/install.log"
abi="$(define MLORA_ABI_VERSION)"
major="$(define MLORA_VERSION_MAJOR)"
real="$(find "$prefix" -name "libmultilora.so.$major" | head -n1)"
[[ -n "$real" && -f "$real" && ! -L "$real" ]] || fail "no libmultilora.so.$major installed under $prefix"
libdir="$(dirname "$real")"
[[ "$(readlink "$libdir/libmultilora.so")" == "libmultilora.so.$major" ]] ||
  fail "libmultilora.so does not link to libmultilora.so.$major"
soname_of() { readelf -d "$1" | sed -nE 's/.*Library soname: \[(.*)\].*/\1/p'; }
soname="$(soname_of "$real")"
wheel_lib="$("$py" -c 'import multilora; print(multilora.get_library())')"
wheel_soname="$(soname_of "$wheel_lib")"
[[ "$soname" == "libmultilora.so.$major" && "$soname" == "$wheel_soname" && "$(basename "$wheel_lib")" == "$soname" ]] ||
  fail "sonames: installed '$soname', wheel '$wheel_soname' ($wheel_lib), expected libmultilora.so.$major"
ok "installed $real, soname $soname = the wheel's ($wheel_lib)"
for f in include/multilora/multilora.h include/multilora/multilora.hpp; do
  cmp -s "$prefix/$f" "$here/$f" || fail "$f not installed (or differs)"
done
for f in multiloraConfig.cmake multiloraConfigVersion.cmake multiloraTargets.cmake; do
  [[ -f "$libdir/cmake/multilora/$f" ]] || fail "no $libdir/cmake/multilora/$f"
done
[[ -f "$libdir/pkgconfig/multilora.pc" ]] || fail "no $libdir/pkgconfig/multilora.pc"
ok "headers, CMake package, pkg-config file"

# references
ort_wheel_lib="$("$py" -c 'import multilora; print(multilora.onnxruntime_library_path())')"
ort_version="$("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')"
model="$out/tiny.onnx"
lora_count="$("$py" -c 'import sys, multilora as ml; from multilora import testing as T
T.make_lora_model(sys.argv[1], layers=1, hidden=8, modules=("q_proj", "v_proj", "o_proj"), seed=1)
print(len(ml.Model(sys.argv[1]).lora_inputs))' "$model")"
[[ "$lora_count" == 6 ]] || fail "the tiny model has $lora_count LoRA inputs, expected 6 (3 projections x A, B)"
not_found="$(define MLORA_STATUS_NOT_FOUND)"
io="$(define MLORA_STATUS_IO)"

# check_run NAME OUTPUT WANT: WANT is the ONNX Runtime file that must be loaded, or "error" (none found)
check_run() {
  local name="$1" text="$2" want="$3" missing line place
  grep -qx "abi $abi $abi" <<<"$text" || fail "$name: ABI line: $(head -n1 <<<"$text")"
  missing="$(sed -nE 's/^missing (-?[0-9]+)$/\1/p' <<<"$text")"
  [[ "$missing" == "$not_found" || "$missing" == "$io" ]] ||
    fail "$name: mlora_model_create on a missing file returned $missing, expected $not_found or $io"
  if [[ "$want" == error ]]; then
    line="$(grep '^ort-error ' <<<"$text")" || fail "$name: ONNX Runtime loaded although nothing should be found"
    for place in "MULTILORA_ORT_LIBRARY: not set" "next to libmultilora ($libdir): no libonnxruntime.so" \
      "recorded at build time: none" "the Python onnxruntime package: no Python interpreter in this process" \
      "the system library path: libonnxruntime.so: " "the system library path: libonnxruntime.so.1: "; do
      grep -qF "$place" <<<"$line" || fail "$name: the error does not list '$place': $line"
    done
  else
    grep -qx "ort $(realpath "$want") $ort_version" <<<"$text" || fail "$name: expected ort $want $ort_version, got: $text"
    grep -qx "lora_inputs $lora_count" <<<"$text" || fail "$name: expected lora_inputs $lora_count, got: $text"
  fi
}
unset MULTILORA_ORT_LIBRARY

echo "test_consumers: find_package(multilora) (tests/consumers/cmake)"
cmake -S "$here/tests/consumers/cmake" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; fail "configure"; }
cmake --build "$out/cmake" >>"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; fail "build"; }
text="$("$out/cmake/consumer" "$out/missing.onnx")"
check_run "find_package, nothing to find" "$text" error
ok "find_package consumer: ABI $abi, missing-file status, the error lists every place looked in"
text="$(MULTILORA_ORT_LIBRARY="$ort_wheel_lib" "$out/cmake/consumer" "$out/missing.onnx" "$model")"
check_run "find_package, MULTILORA_ORT_LIBRARY" "$text" "$ort_wheel_lib"
ok "find_package consumer with MULTILORA_ORT_LIBRARY: ONNX Runtime $ort_version, $lora_count LoRA inputs"

echo "test_consumers: pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
[[ "$(pkg-config --modversion multilora)" == "$("$py" -c 'import multilora; print(multilora.__version__)')" ]] ||
  fail "pkg-config --modversion multilora: $(pkg-config --modversion multilora)"
# shellcheck disable=SC2046
gcc -std=c99 -Wall -Wextra -pedantic -Werror "$here/tests/consumers/consumer.c" $(pkg-config --cflags --libs multilora) \
  -Wl,-rpath,"$(pkg-config --variable=libdir multilora)" -o "$out/consumer_pc" || fail "pkg-config build"
cp "$ort_wheel_lib" "$libdir/"
next_to="$libdir/$(basename "$ort_wheel_lib")"
text="$("$out/consumer_pc" "$out/missing.onnx" "$model")"
check_run "pkg-config, ONNX Runtime next to libmultilora" "$text" "$next_to"
rm -f "$next_to"
ok "pkg-config consumer: ONNX Runtime found next to libmultilora, $lora_count LoRA inputs"
text="$("$out/consumer_pc" "$out/missing.onnx")"
check_run "pkg-config, nothing to find" "$text" error
ok "pkg-config consumer without ONNX Runtime: every place listed"

echo "test_consumers: loaded from Python with ctypes (the interpreter's onnxruntime package)"
code='import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
path, ver = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(128)
n1, n2 = ctypes.c_size_t(), ctypes.c_size_t()
st = lib.mlora_ort_info(path, ctypes.c_size_t(4096), ctypes.byref(n1), ver, ctypes.c_size_t(128), ctypes.byref(n2))
lib.mlora_last_error_message.restype = ctypes.c_char_p
print(path.value.decode() if st == 0 else "error " + lib.mlora_last_error_message().decode())'
got="$("$py" -c "$code" "$real")"
[[ "$got" == "$(realpath "$ort_wheel_lib")" ]] || fail "ctypes: expected $(realpath "$ort_wheel_lib"), got: $got"
ok "ctypes in Python: $got"
echo "test_consumers: all passed"
