#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs homeiq-daemon into it; with --test also the test tools.
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "homeiq: needs Python 3.11 or newer (Raspberry Pi OS bookworm ships 3.11: sudo apt install python3 python3-venv)" >&2
  exit 1
fi
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
stamp=".venv/.installed${extra:+-test}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing homeiq${extra} and its dependencies into .venv (the first time takes a few minutes on a Raspberry Pi)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # pip's own lines (Collecting …, a progress bar at a terminal) show that it is working
  .venv/bin/python -m pip install --disable-pip-version-check -e ".${extra}" >&2
  touch "$stamp"
fi
