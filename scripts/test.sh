#!/usr/bin/env bash
# The test command (README, .ci/run): installs everything it needs itself, builds the library, the
# Python package and the bindings, and runs every suite: C/C++ (CTest), bindings + conformance,
# pytest. Safe to re-run; a fresh machine needs only network access to PyPI and Debian's mirror.
#
# Environment knobs: MLORA_VENV (default .venv), MLORA_SKIP_APT=1 (don't apt-get install),
# MLORA_SKIP_BINDINGS=1 (skip C#/Java/conformance), MLORA_SKIP_FUZZ=1 (skip the short fuzz run),
# MLORA_FUZZ_SECONDS (per fuzz target, default 20), PYTEST_ARGS (extra pytest arguments),
# MLORA_TEST_RAY=1 (install Ray Serve, requirements-ray.txt, so tests/python/test_serve_ray.py runs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLORA_VENV:-$here/.venv}"
step() { printf '\n==== %s ====\n' "$*"; }

step "system packages"
bash scripts/install_system_deps.sh

step "python environment + build ($venv)"
bash scripts/setup_env.sh
py="$venv/bin/python"
export PATH="$venv/bin:$PATH"

step "lint: ruff, clang-format, generated shims up to date"
bash scripts/lint.sh

step "C/C++ tests (CTest)"
cmake -S . -B build/ctest -DMLORA_BUILD_TESTS=ON -DPython3_EXECUTABLE="$py" >/dev/null
cmake --build build/ctest -j2
ctest --test-dir build/ctest --output-on-failure

if [[ "${MLORA_SKIP_FUZZ:-0}" != 1 ]]; then
  step "fuzz: libFuzzer short run (${MLORA_FUZZ_SECONDS:-20} s per target; docs/errors.md for long runs)"
  MLORA_PYTHON="$py" bash scripts/fuzz.sh
fi

if [[ "${MLORA_SKIP_BINDINGS:-0}" != 1 ]]; then
  step "bindings: generated shims, ABI checks, C/C++/C#/Java samples, conformance"
  PATH="$venv/bin:$PATH" MLORA_LIB_DIR="$here/build/ctest" bash scripts/test_bindings.sh
fi

if [[ "${MLORA_TEST_RAY:-0}" == 1 ]]; then
  step "Ray Serve for the scale-out test (requirements-ray.txt)"
  "$py" -m pip install -q --disable-pip-version-check -r requirements-ray.txt
fi

step "pytest"
cd "$here/tests/python"
# shellcheck disable=SC2086
"$py" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} .
