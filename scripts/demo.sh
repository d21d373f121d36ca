#!/usr/bin/env bash
# The demo command (README): builds and installs multilora into .venv if needed, then serves a small
# seeded model with three adapters — base, each adapter, a weighted mix — and prints a table.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MLORA_VENV:-$here/.venv}"
bash "$here/scripts/setup_env.sh"
exec "$venv/bin/python" "$here/scripts/demo.py" "$@"
