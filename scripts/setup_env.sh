#!/usr/bin/env bash
# Prepares the project's Python environment: a virtualenv (MLORA_VENV, default .venv) with the pinned
# packages of requirements-dev.txt, the native build dependencies (scripts/fetch_deps.sh), and the
# multilora package built and installed from this checkout. Used by scripts/test.sh and scripts/demo.sh.
#
# The package is built in MLORA_BUILD_DIR (default build/ctest), kept, with the C/C++ tests
# (MLORA_BUILD_TESTS=ON) and debug info (-g, for the ABI check), so that scripts/test.sh runs CTest, the C
# consumers, the bindings and the ABI check on this one build of the core, and scripts/demo.sh after it (or the
# other way round) compiles nothing again. That build records no ONNX Runtime path in the library
# (MLORA_DEFAULT_ORT_LIBRARY=none), so the tests exercise the run-time search; the Python package points the
# core at the onnxruntime wheel itself.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLORA_VENV:-$here/.venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
py="$venv/bin/python"
echo "setup_env: pinned packages (requirements-dev.txt) into $venv"
"$py" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
echo "setup_env: build dependencies (scripts/fetch_deps.sh)"
bash scripts/fetch_deps.sh >/dev/null
MLORA_BUILD_DIR="${MLORA_BUILD_DIR:-$here/build/ctest}"
# A build dir configured by an older checkout with another generator (Unix Makefiles) cannot be reused by
# scikit-build-core's Ninja build ("ninja: error: Makefile:5"): start it afresh.
if [[ -f "$MLORA_BUILD_DIR/CMakeCache.txt" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$MLORA_BUILD_DIR/CMakeCache.txt"; then
  echo "setup_env: $MLORA_BUILD_DIR was configured with another CMake generator; removing it"
  rm -rf "$MLORA_BUILD_DIR"
fi
mkdir -p "$MLORA_BUILD_DIR"
build_dir="$(cd "$MLORA_BUILD_DIR" && pwd)"
pip_args=(-m pip install --disable-pip-version-check --no-build-isolation
  -C "build-dir=$build_dir" -C cmake.define.MLORA_BUILD_TESTS=ON -C "cmake.define.CMAKE_CXX_FLAGS=-g"
  -C cmake.define.MLORA_DEFAULT_ORT_LIBRARY=none)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "setup_env: building and installing the multilora package in $build_dir (minutes on 2 cores; compile steps below)"
start=$SECONDS
# -v streams the build; only Ninja's "[n/N] ..." progress lines are shown, the whole log only on failure.
if ! PATH="$venv/bin:$PATH" "$py" "${pip_args[@]}" -v . 2>&1 | tee "$log" |
  { grep --line-buffered -E '^ *\[[0-9]+/[0-9]+\] ' | sed -u -E 's/^ +//; s/^(.{0,110}).*/\1/' || true; }; then
  tail -n 80 "$log" >&2
  echo "setup_env: building the multilora package failed (the last lines of the log are above)" >&2
  exit 1
fi
echo "setup_env: multilora installed ($((SECONDS - start)) s)"
