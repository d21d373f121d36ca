#!/usr/bin/env bash
# Prepares the project's Python environment: a virtualenv (MLORA_VENV, default .venv) with the pinned
# packages of requirements-dev.txt, the native build dependencies (scripts/fetch_deps.sh), and the
# multilora package built and installed from this checkout. Used by scripts/test.sh and scripts/demo.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLORA_VENV:-$here/.venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
bash scripts/fetch_deps.sh >/dev/null
PATH="$venv/bin:$PATH" "$py" -m pip install -q --disable-pip-version-check --no-build-isolation .
