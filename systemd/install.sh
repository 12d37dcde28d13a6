#!/usr/bin/env bash
# Install homeiq-daemon as a systemd service (Raspberry Pi OS bookworm, Debian 12; Python 3.11+).
#
#   sudo systemd/install.sh --secrets ~/homeiq-secrets     install or upgrade, enable, (re)start
#   sudo systemd/install.sh --uninstall [--purge]          remove (--purge: config, secrets, data, user too)
#
# What it does, each step safe to repeat:
#   * the system user `homeiq` (systemd-sysusers, from systemd/homeiq.sysusers)
#   * a virtualenv at /opt/homeiq/venv with this package installed (pip, its progress shown), and
#     /usr/local/bin/homeiq linked to it so `homeiq` is on PATH; built in place (with --root: its scripts are
#     pointed at /opt/homeiq/venv, where the staged tree will live)
#   * /etc/homeiq/homeiq.toml from config/homeiq.example.toml, only if there is none yet
#   * every file of --secrets DIR copied to /etc/homeiq/credentials/ (root, mode 0600), where the unit's
#     LoadCredential= lines read them; names the unit does not list get a drop-in of their own
#   * systemd/homeiq.service to /etc/systemd/system/, enabled and (re)started
#
# --root DIR stages everything under DIR instead of / (image building, tests): nothing is started there.
# See docs/systemd.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
UNIT_NAME=homeiq.service
SERVICE_USER=homeiq
CREDENTIAL_NAME_RE='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$'

ROOT=""
SOURCE="$REPO"
SECRETS=""
PYTHON="${PYTHON:-python3}"
MAKE_VENV=1
START=1
UNINSTALL=0
PURGE=0
PIP_ARGS=()

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --secrets DIR     install every file in DIR as a credential (ha_token, influxdb_token, influxdb_password,
                    http_token, webhook_<name>, ...); existing credentials of other names are kept
  --source PATH     what pip installs into the venv (default: this checkout); a wheel works too
  --python PATH     the interpreter for the venv (default: python3; 3.11 or newer)
  --pip-arg ARG     pass ARG to pip install (repeat for several)
  --no-venv         leave /opt/homeiq/venv alone (you manage it)
  --no-start        enable, but do not (re)start now
  --root DIR        stage under DIR instead of / (nothing is started)
  --uninstall       stop, disable, remove the unit, the venv and /usr/local/bin/homeiq; keep config,
                    secrets, data and the user
  --purge           with --uninstall: remove those too
EOF
}

say() { printf 'homeiq-install: %s\n' "$*"; }
STEP=0
STEPS=7
step() { STEP=$((STEP + 1)); say "[$STEP/$STEPS] $*"; }
die() { printf 'homeiq-install: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a path}"; shift 2 ;;
    --secrets) SECRETS="${2:?--secrets needs a directory}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
    --pip-arg) PIP_ARGS+=("${2?--pip-arg needs a value}"); shift 2 ;;
    --no-venv) MAKE_VENV=0; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != / ] || ROOT=""
fi
FINAL_VENV=/opt/homeiq/venv
PREFIX="$ROOT/opt/homeiq"
VENV="$ROOT$FINAL_VENV"
LINK="$ROOT/usr/local/bin/homeiq"
ETC="$ROOT/etc/homeiq"
CREDENTIALS="$ETC/credentials"
UNIT_DIR="$ROOT/etc/systemd/system"
UNIT="$UNIT_DIR/$UNIT_NAME"
DROPIN_DIR="$UNIT_DIR/$UNIT_NAME.d"
DROPIN="$DROPIN_DIR/credentials.conf"
SYSUSERS="$ROOT/etc/sysusers.d/homeiq.conf"
STATE="$ROOT/var/lib/homeiq"

# systemctl acts on the running manager only for a real install on a machine booted with systemd.
LIVE=0
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then LIVE=1; fi
IS_ROOT=0
if [ "$(id -u)" -eq 0 ]; then IS_ROOT=1; fi
if [ -z "$ROOT" ] && [ "$IS_ROOT" -eq 0 ]; then die "run as root (sudo), or stage with --root DIR"; fi

systemctl_() {
  if [ -n "$ROOT" ]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}

# owner USER:GROUP PATH... (numeric ids from the target root's own /etc/passwd, so --root works too)
owner() {
  local spec="$1"; shift
  [ "$IS_ROOT" -eq 1 ] || return 0
  local user="${spec%%:*}" group="${spec##*:}" uid=0 gid=0
  [ "$user" = root ] || uid="$(awk -F: -v n="$user" '$1 == n { print $3 }' "$ROOT/etc/passwd")"
  [ "$group" = root ] || gid="$(awk -F: -v n="$group" '$1 == n { print $3 }' "$ROOT/etc/group")"
  if [ -z "$uid" ] || [ -z "$gid" ]; then die "no user/group $spec in $ROOT/etc/passwd"; fi
  chown "$uid:$gid" "$@"
}

# Credential IDs the unit itself lists; others need the drop-in.
unit_credentials() {
  sed -n 's/^LoadCredential=\([^:]*\):.*/\1/p' "$HERE/$UNIT_NAME"
}

# --- uninstall ----------------------------------------------------------------------------------------

if [ "$UNINSTALL" -eq 1 ]; then
  if [ "$LIVE" -eq 1 ]; then
    systemctl disable --now "$UNIT_NAME" 2>/dev/null || true
  elif [ -e "$UNIT" ]; then
    systemctl_ disable "$UNIT_NAME" >/dev/null 2>&1 || true
  fi
  rm -f "$UNIT"
  rm -rf "$DROPIN_DIR" "$PREFIX"
  # only our own link: a homeiq installed there some other way stays
  if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$FINAL_VENV/bin/homeiq" ]; then rm -f "$LINK"; fi
  [ "$LIVE" -eq 0 ] || systemctl daemon-reload
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$STATE"
    if grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null; then
      userdel ${ROOT:+--root "$ROOT"} "$SERVICE_USER" 2>/dev/null || true
    fi
    rm -f "$SYSUSERS"
    say "removed homeiq, its configuration, credentials, data and user"
  else
    say "removed the service and $PREFIX; kept $ETC (config, credentials), $STATE (spool, history) and user $SERVICE_USER (--purge removes them)"
  fi
  exit 0
fi

# --- install ------------------------------------------------------------------------------------------

command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found (is this a systemd system?)"
[ -z "$SECRETS" ] || [ -d "$SECRETS" ] || die "--secrets $SECRETS is not a directory"

# 1. the user
step "service user $SERVICE_USER"
install -d -m 0755 "$(dirname "$SYSUSERS")"
install -m 0644 "$HERE/homeiq.sysusers" "$SYSUSERS"
systemd-sysusers ${ROOT:+--root="$ROOT"} "$SYSUSERS"

# 2. the virtualenv, built where it runs (pip is always run as `python -m pip`: with --root the scripts'
#    first lines name the final path, which does not exist on the staging machine)
if [ "$MAKE_VENV" -eq 1 ]; then
  step "virtualenv $FINAL_VENV"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (use --python)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    install -d -m 0755 "$PREFIX"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing $SOURCE into $VENV (pip; the first time takes a few minutes on a Raspberry Pi)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$SOURCE" \
    || die "pip could not install $SOURCE (see its output above)"
  if [ "$VENV" != "$FINAL_VENV" ]; then
    # Staged: point every script at the final path (text files that name the staging path only).
    grep -rlI --null -F "$VENV" "$VENV/bin" | xargs -0 -r sed -i "s#$VENV#$FINAL_VENV#g"
  fi
  version="$("$VENV/bin/python" -m homeiq_daemon --version)" || die "$VENV does not run homeiq"
  say "installed $version"
else
  step "virtualenv: left alone (--no-venv)"
fi
# `homeiq` on PATH; a different file there is not ours to replace
install -d -m 0755 "$(dirname "$LINK")"
if [ -L "$LINK" ] || [ ! -e "$LINK" ]; then
  ln -sfn "$FINAL_VENV/bin/homeiq" "$LINK"
else
  say "warning: $LINK exists and is not a link to $FINAL_VENV/bin/homeiq: left alone"
fi
install -d -m 0755 "$PREFIX/docs"
install -m 0644 "$REPO/docs/systemd.md" "$PREFIX/docs/systemd.md"

# 3. configuration: never overwrite what the admin has edited
step "configuration $ETC/homeiq.toml"
install -d -m 0755 "$ETC"
if [ -e "$ETC/homeiq.toml" ]; then
  say "kept $ETC/homeiq.toml"
else
  if [ -f "$REPO/config/homeiq.example.toml" ]; then
    install -m 0640 "$REPO/config/homeiq.example.toml" "$ETC/homeiq.toml"
  else
    printf '%s\n' "# homeiq configuration; every setting is described in config/homeiq.example.toml." \
      "# Secrets go to /etc/homeiq/credentials/ (see docs/systemd.md), not here." > "$ETC/homeiq.toml"
    chmod 0640 "$ETC/homeiq.toml"
  fi
  owner root:"$SERVICE_USER" "$ETC/homeiq.toml"
  say "wrote $ETC/homeiq.toml: set home_assistant.url (and influxdb.url) there"
fi

# 4. credentials: root-only files; systemd hands copies to the service under $CREDENTIALS_DIRECTORY
step "credentials $CREDENTIALS"
install -d -m 0700 "$CREDENTIALS"
owner root:root "$CREDENTIALS"
if [ -n "$SECRETS" ]; then
  count=0
  for file in "$SECRETS"/*; do
    [ -f "$file" ] || continue
    name="$(basename "$file")"
    [[ "$name" =~ $CREDENTIAL_NAME_RE ]] || die "secret file name $name: use letters, digits, _ . - only"
    install -m 0600 "$file" "$CREDENTIALS/$name"
    owner root:root "$CREDENTIALS/$name"
    count=$((count + 1))
  done
  say "installed $count credential(s) into $CREDENTIALS"
fi

# 5. the unit, and a drop-in for credentials it does not list itself
step "systemd unit $UNIT"
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$HERE/$UNIT_NAME" "$UNIT"
mapfile -t known < <(unit_credentials)
extra=()
for file in "$CREDENTIALS"/*; do
  [ -f "$file" ] || continue
  name="$(basename "$file")"
  case " ${known[*]} " in *" $name "*) continue ;; esac
  extra+=("$name")
done
if [ "${#extra[@]}" -gt 0 ]; then
  install -d -m 0755 "$DROPIN_DIR"
  {
    echo "# Written by install.sh from the files in /etc/homeiq/credentials; rerun it after adding or removing one."
    echo "[Service]"
    for name in "${extra[@]}"; do echo "LoadCredential=$name:/etc/homeiq/credentials/$name"; done
  } > "$DROPIN.tmp"
  chmod 0644 "$DROPIN.tmp"
  mv -f "$DROPIN.tmp" "$DROPIN"
else
  rm -f "$DROPIN"
  rmdir "$DROPIN_DIR" 2>/dev/null || true
fi

# 6. the state directory (systemd's StateDirectory= keeps it right from here on); group homeiq may read it
step "state directory $STATE"
install -d -m 0750 "$STATE"
owner "$SERVICE_USER:$SERVICE_USER" "$STATE"

# 7. enable, and (re)start so an upgrade or a new secret takes effect
step "enable $UNIT_NAME"
if [ "$LIVE" -eq 1 ]; then
  systemctl daemon-reload
  systemd-analyze verify "$UNIT_NAME" || say "warning: systemd-analyze verify reported the above"
  systemctl enable --quiet "$UNIT_NAME"
  if [ "$START" -eq 1 ]; then
    systemctl restart "$UNIT_NAME"
    say "started: systemctl status homeiq; journalctl -u homeiq -f"
  else
    say "enabled; start it with: systemctl start homeiq"
  fi
else
  # (a staged root has no multi-user.target to link from; systemctl says so and links anyway)
  systemctl_ enable --quiet "$UNIT_NAME" 2>/dev/null || die "systemctl enable failed"
  if [ -n "$ROOT" ]; then
    say "staged under $ROOT (enabled, not started)"
  else
    say "systemd is not running here: enabled for the next boot, not started"
  fi
fi
say "the CLI: homeiq --help (as root, or as a member of group $SERVICE_USER: sudo usermod -aG $SERVICE_USER \$USER)"
