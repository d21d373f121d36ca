#!/usr/bin/env bash
# Style checks: ruff (lint + format check) on Python, clang-format on C/C++, generated shims up to date, and an
# ownership word on every pointer parameter of the header, caller buffers included (gen_bindings.py --lint-ownership).
# Tools are pinned and installed into the project venv from PyPI. `--fix` rewrites instead of checking.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLORA_VENV:-$here/.venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ruff==0.17.5 clang-format==23.1.3
fix=0; [[ "${1:-}" == --fix ]] && fix=1
py_files=(python scripts benchmarks tests/python tests/conformance tests/c/make_fixtures.py tests/fuzz)
cxx_files=$(git ls-files --cached --others --exclude-standard 'csrc/*.cpp' 'csrc/*.h' 'include/*.hpp' 'python/src/*.cpp' 'tests/c/*.c' 'tests/c/*.cpp' 'benchmarks/*.cpp')
if [[ $fix == 1 ]]; then
  "$venv/bin/ruff" check --fix "${py_files[@]}"
  "$venv/bin/ruff" format "${py_files[@]}"
  "$venv/bin/clang-format" -i $cxx_files
else
  "$venv/bin/ruff" check "${py_files[@]}"
  "$venv/bin/ruff" format --check "${py_files[@]}"
  "$venv/bin/clang-format" --dry-run -Werror $cxx_files
fi
"$venv/bin/python" scripts/gen_bindings.py --check
"$venv/bin/python" scripts/gen_bindings.py --lint-ownership >/dev/null || { "$venv/bin/python" scripts/gen_bindings.py --lint-ownership; exit 1; }
echo "lint: ok"
