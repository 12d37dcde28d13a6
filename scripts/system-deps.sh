#!/usr/bin/env bash
# The Debian packages the test suite runs for real (influxd, systemd's tools, Chromium and its driver, Python's
# venv). As root it installs the missing ones (apt-get update first); otherwise it prints the exact command
# and fails. Add a line to WANTED for a new tool: "<command or path> <package>".
set -euo pipefail
WANTED=(
  "influxd influxdb"
  "systemd-analyze systemd"
  "/usr/bin/chromium chromium"
  "/usr/bin/chromedriver chromium-driver"
  "/usr/lib/systemd/systemd-journal-remote systemd-journal-remote"  # journal files for the docs' journalctl recipes
  "jq jq"
  "promtool prometheus"  # promtool check metrics on /metrics
)
need=()
for item in "${WANTED[@]}"; do
  read -r probe package <<<"$item"
  if [ "${probe#/}" != "$probe" ]; then
    [ -x "$probe" ] || need+=("$package")
  else
    command -v "$probe" >/dev/null 2>&1 || need+=("$package")
  fi
done
# python3 -m venv needs ensurepip, which Debian ships separately.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test: missing Debian packages; install them with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "scripts/test: installing ${need[*]} with apt-get (once)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null
# The Debian influxdb package may start its own influxd on :8086; the tests start theirs on free ports.
