#!/usr/bin/env bash
# Builds (once) a virtualenv holding the real Home Assistant package used by the end-to-end tests, and prints
# its path. It lives in a cache directory outside the checkout so repeated runs reuse it; a fresh machine
# builds it. Home Assistant pins its own aiohttp and friends, so it gets its own venv and runs as a subprocess
# (tests/support/real_ha.py starts it with --skip-pip: no network at test time).
#
# Which integrations need which Python packages is read from Home Assistant's own manifests: HA 2024.3 always
# sets up its DEFAULT_INTEGRATIONS (frontend, person, backup, hardware, ...) whatever configuration.yaml says,
# and when `frontend` fails it falls back to recovery mode (no api, no websocket_api). So their requirements,
# plus those of the integrations the test configuration names, must be installed here.
set -euo pipefail
HA_VERSION="${HOMEIQ_TEST_HA_VERSION:-2024.3.3}"
CACHE="${HOMEIQ_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homeiq-test}"
VENV="$CACHE/ha-$HA_VERSION"
# Bump when the recipe below changes: an existing venv with an older stamp gets the missing packages.
RECIPE=5
# Keep in step with INTEGRATIONS in tests/support/real_ha.py.
# influxdb: its event_to_json is the reference the mapping tests compare against.
# recorder, history: the backfill tests read HA's recorder through history/history_during_period.
INTEGRATIONS="http api websocket_api webhook automation input_text input_number input_boolean influxdb recorder history"
PY="${HOMEIQ_TEST_HA_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.complete"

if [ -x "$VENV/bin/hass" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$VENV"
  exit 0
fi
mkdir -p "$CACHE"
# Two test runs may build at the same time (CI matrix, several checkouts): one builds, the other waits.
exec 9>"$CACHE/.ha-$HA_VERSION.lock"
flock -w 1800 9
if [ -x "$VENV/bin/hass" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$VENV"
  exit 0
fi

pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input)
if [ ! -x "$VENV/bin/hass" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  # josepy 2 removed an API that HA 2024.3's acme dependency imports.
  "${pip[@]}" "homeassistant==$HA_VERSION" "josepy<2" >&2
fi

# A command substitution, not <(...): if this fails, set -e stops the script before the stamp is written.
# shellcheck disable=SC2086 # INTEGRATIONS is a word list
requirement_lines="$("$VENV/bin/python" - $INTEGRATIONS <<'PY'
import json
import pathlib
import sys

import homeassistant
from homeassistant import bootstrap

components = pathlib.Path(homeassistant.__file__).parent / "components"
wanted = set(sys.argv[1:]) | bootstrap.DEFAULT_INTEGRATIONS | bootstrap.CORE_INTEGRATIONS
seen: set[str] = set()
requirements: set[str] = set()
while wanted:
    domain = wanted.pop()
    if domain in seen:
        continue
    seen.add(domain)
    manifest = json.loads((components / domain / "manifest.json").read_text())
    requirements.update(manifest.get("requirements", []))
    # after_dependencies are not set up unless configured, but modules import them anyway (analytics imports
    # recorder, hence SQLAlchemy): their requirements must be importable too.
    wanted.update(manifest.get("dependencies", []))
    wanted.update(manifest.get("after_dependencies", []))
print("\n".join(sorted(requirements)))
PY
)"
mapfile -t requirements <<<"$requirement_lines"
if [ -n "$requirement_lines" ]; then
  "${pip[@]}" "${requirements[@]}" "josepy<2" >&2
fi
echo "$RECIPE" >"$STAMP"
echo "$VENV"
