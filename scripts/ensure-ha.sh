#!/usr/bin/env bash
# Builds (once) a virtualenv holding the real Home Assistant package used by the end-to-end tests.
# It lives in a cache directory outside the checkout so repeated runs reuse it; a fresh machine builds it.
# Home Assistant pins its own aiohttp and friends, so it gets its own venv and runs as a subprocess.
set -euo pipefail
HA_VERSION="${HOMEIQ_TEST_HA_VERSION:-2024.3.3}"
CACHE="${HOMEIQ_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homeiq-test}"
VENV="$CACHE/ha-$HA_VERSION"
PY="${HOMEIQ_TEST_HA_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ -x "$VENV/bin/hass" ] && [ -f "$VENV/.complete" ]; then
  echo "$VENV"
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY" -m venv "$VENV" >&2
"$VENV/bin/pip" install -q --upgrade pip >&2
# josepy 2 removed an API that HA 2024.3's acme dependency imports.
"$VENV/bin/pip" install -q "homeassistant==$HA_VERSION" "josepy<2" >&2
# Integrations the tests load import these lazily; HA would otherwise try to pip-install them at start,
# and the test HA runs with --skip-pip.
"$VENV/bin/pip" install -q "$("$VENV/bin/python" - <<'PY'
import json, pathlib, homeassistant
base = pathlib.Path(homeassistant.__file__).parent / "components"
reqs = set()
for name in ("http", "api", "websocket_api", "webhook", "automation", "input_text", "input_number",
             "input_boolean", "frontend", "auth", "onboarding", "config", "person", "template"):
    manifest = base / name / "manifest.json"
    if manifest.exists():
        reqs.update(json.loads(manifest.read_text()).get("requirements", []))
print(" ".join(sorted(reqs)) or "pip")
PY
)" >&2 || true
touch "$VENV/.complete"
echo "$VENV"
