#!/usr/bin/env bash
# The demo command (README): builds and installs multilora into .venv if needed, then runs the committed trained
# model (demo/model/) with three adapters — base, each adapter, a weighted mix, all in one batch — as text.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MLORA_VENV:-$here/.venv}"
bash "$here/scripts/setup_env.sh"
exec "$venv/bin/python" "$here/scripts/demo.py" "$@"
