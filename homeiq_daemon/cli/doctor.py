"""``homeiq doctor``: checks what the daemon needs, one line each (``ok``, ``warn`` or ``fail``) with the fix.

Checks: the config is valid; Home Assistant answers with the token (its version, whether the recorder is
loaded, the clock skew between this machine and HA); InfluxDB answers and takes a write (1.x: one point to
the scratch measurement ``homeiq_doctor``, then dropped again where the user may; 2.x: the bucket is listed
for the token); the state dir is writable, private, with free space; the systemd unit's state; the running
daemon's own verdict. Exit code 1 when a check failed, else 0 (warnings do not fail).

Every request has a timeout; HA is asked at most twice (one rejected token never becomes a login loop that
HA's ip_ban would punish).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from homeiq_daemon.cli import status as status_cli
from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.config import Settings
from homeiq_daemon.errors import EXIT_FAILURE, EXIT_OK, HomeIQError
from homeiq_daemon.redaction import redact_text, redact_url

Level = Literal["ok", "warn", "fail"]
TIMEOUT_S = 10.0
SKEW_WARN_S = 2.0
SKEW_FAIL_S = 60.0
MIN_FREE_BYTES = 100 * 1024 * 1024
SCRATCH_MEASUREMENT = "homeiq_doctor"
UNIT = "homeiq.service"


@dataclass(frozen=True, slots=True)
class Check:
    level: Level
    name: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level:<4}  {self.name:<14}  {self.message}"
        text += f"  → fix: {self.fix}" if self.fix and self.level != "ok" else ""
        return redact_text(text)  # a check may quote a URL or an error holding one: never its secrets


def register(sub: Any) -> None:
    add_command(
        sub, "doctor", cmd_doctor, help="check config, Home Assistant, InfluxDB, state dir, systemd (one line each)"
    )


def cmd_doctor(args: argparse.Namespace, load: Loader) -> int:
    return run(args, lambda: load(read_only=True))


def run(args: argparse.Namespace, load: Callable[[], Settings], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    checks = list(run_checks(load))
    for check in checks:
        out.write(check.line() + "\n")
        out.flush()
    failed = [c for c in checks if c.level == "fail"]
    warned = [c for c in checks if c.level == "warn"]
    out.write(f"{len(checks)} checks: {len(failed)} failed, {len(warned)} warnings\n")
    return EXIT_FAILURE if failed else EXIT_OK


def run_checks(load: Callable[[], Settings]) -> Iterator[Check]:
    try:
        settings = load()
    except HomeIQError as exc:
        yield Check("fail", "config", str(exc), "correct that setting (homeiq check-config shows them all)")
        return
    yield Check("ok", "config", "valid")
    yield from check_home_assistant(settings)
    yield check_influxdb(settings)
    yield from check_state_dir(settings)
    yield check_systemd()
    yield check_daemon(settings)


# --- HTTP (urllib: the CLI stays light; every request has a timeout) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_at: float
    received_at: float


def _request(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    verify_ssl: bool = True,
) -> Reply:
    context = None
    if url.startswith("https:") and not verify_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    sent = time.time()
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310
            data = response.read(1 << 20)
            return Reply(response.status, dict(response.headers.items()), data, sent, time.time())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read(1 << 16), sent, time.time())


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason)[:200] or type(exc).__name__


def _http_base(url: str) -> str:
    """HA's address as http(s)://host:port, from an http or a ws URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if path.endswith("/api/websocket"):
        path = path[: -len("/api/websocket")]
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


# --- Home Assistant ------------------------------------------------------------------------------------------


def check_home_assistant(settings: Settings) -> Iterator[Check]:
    ha = settings.home_assistant
    if not ha.url:
        yield Check("warn", "home_assistant", "not configured: only replay or other sources feed the daemon",
                    "set home_assistant.url and home_assistant.token")  # fmt: skip
        return
    base = _http_base(ha.url)
    shown = redact_url(base)
    if ha.token is None:
        yield Check("fail", "home_assistant", f"{shown}: no token", "set home_assistant.token (HA profile → Security → "
                    "long-lived access tokens)")  # fmt: skip
        return
    headers = {"Authorization": f"Bearer {ha.token.get_secret_value().strip()}"}
    try:
        reply = _request(base + "/api/config", headers=headers, verify_ssl=ha.verify_ssl)
    except (urllib.error.URLError, OSError) as exc:
        yield Check("fail", "home_assistant", f"cannot reach {shown}: {_why(exc)}",
                    "start Home Assistant, or correct home_assistant.url (host and port, e.g. :8123)")  # fmt: skip
        return
    if reply.status == 401:
        yield Check("fail", "home_assistant", f"{shown} rejected the token (HTTP 401)",
                    "create a new long-lived access token in HA (profile → Security) and set home_assistant.token; "
                    "repeated failures get this address banned when HA's ip_ban_enabled is on")  # fmt: skip
        return
    if reply.status != 200:
        yield Check("fail", "home_assistant", f"{shown}/api/config answered HTTP {reply.status}",
                    "make sure HA's `api:` integration is loaded (default_config loads it)")  # fmt: skip
        return
    try:
        config = json.loads(reply.body)
    except ValueError:
        yield Check("fail", "home_assistant", f"{shown}/api/config: not JSON: is this Home Assistant?",
                    "correct home_assistant.url")  # fmt: skip
        return
    version = config.get("version", "?")
    yield Check("ok", "home_assistant", f"{shown} answers with the token: Home Assistant {version}")
    components = set(config.get("components") or [])
    if "recorder" in components:
        yield Check("ok", "recorder", "on: gaps while the daemon was away can be filled from HA's history")
    else:
        yield Check("warn", "recorder", "off: nothing records what happens while the daemon is not running",
                    "add `recorder:` (or `default_config:`) to HA's configuration.yaml")  # fmt: skip
    yield _clock_skew(reply)


def _clock_skew(reply: Reply) -> Check:
    date = reply.headers.get("Date")
    if not date:
        return Check("warn", "clock", "HA sent no Date header: skew unknown")
    try:
        ha_time = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("warn", "clock", f"HA's Date header {date!r} is not a date: skew unknown")
    # The header has whole seconds: HA's clock read somewhere between sending and receiving, truncated.
    low = reply.sent_at - (ha_time + 1)
    high = reply.received_at - ha_time
    skew = 0.0 if low <= 0 <= high else (low if low > 0 else high)
    side = "ahead of" if skew > 0 else "behind"
    text = f"this machine is {abs(skew):.1f} s {side} HA" if skew else "in step with HA (±1 s)"
    if abs(skew) >= SKEW_FAIL_S:
        return Check("fail", "clock", text, "enable time sync on both (timedatectl set-ntp true)")
    if abs(skew) >= SKEW_WARN_S:
        return Check("warn", "clock", text, "enable time sync on both (timedatectl set-ntp true)")
    return Check("ok", "clock", text)


# --- InfluxDB ------------------------------------------------------------------------------------------------


def check_influxdb(settings: Settings) -> Check:
    influx = settings.influxdb
    if not settings.uses_influxdb or influx.url is None:
        return Check("ok", "influxdb", f"not configured: points go to the embedded store {settings.history_db_path}")
    base = influx.url.rstrip("/")
    shown = redact_url(base)
    try:
        if influx.api_version == 2:
            return _influx_v2(settings, base, shown)
        return _influx_v1(settings, base, shown)
    except (urllib.error.URLError, OSError) as exc:
        return Check("fail", "influxdb", f"cannot reach {shown}: {_why(exc)}",
                     "start InfluxDB (systemctl start influxdb) or correct influxdb.url")  # fmt: skip


def _influx_v1(settings: Settings, base: str, shown: str) -> Check:
    influx = settings.influxdb
    ping = _request(base + "/ping", verify_ssl=influx.verify_ssl)
    version = ping.headers.get("X-Influxdb-Version", "?")
    query = {"db": influx.database, "precision": "s"}
    if influx.retention_policy:
        query["rp"] = influx.retention_policy
    if influx.username:
        query["u"] = influx.username
    if influx.password is not None:
        query["p"] = influx.password.get_secret_value()
    line = f"{SCRATCH_MEASUREMENT} check=1i {int(time.time())}\n".encode()
    reply = _request(f"{base}/write?{urllib.parse.urlencode(query)}", method="POST", body=line,
                     verify_ssl=influx.verify_ssl)  # fmt: skip
    if reply.status == 204:
        drop = dict(query, q=f'DROP MEASUREMENT "{SCRATCH_MEASUREMENT}"')
        drop.pop("precision")
        _request(f"{base}/query?{urllib.parse.urlencode(drop)}", method="POST", verify_ssl=influx.verify_ssl)
        return Check("ok", "influxdb", f"{shown} (InfluxDB {version}) took a write to {influx.database}")
    detail = _error_text(reply)
    if reply.status in (401, 403):
        return Check("fail", "influxdb", f"{shown} refused the credentials (HTTP {reply.status}: {detail})",
                     "correct influxdb.username / influxdb.password (or the influxdb_password credential)")  # fmt: skip
    if reply.status == 404 and "database not found" in detail:
        if influx.create_database:
            return Check("warn", "influxdb", f"{shown}: database {influx.database!r} does not exist yet",
                         "none if the user may create it: the daemon runs CREATE DATABASE at start")  # fmt: skip
        return Check("fail", "influxdb", f"{shown}: database {influx.database!r} does not exist",
                     f"CREATE DATABASE {influx.database} in influx, or influxdb.create_database = true")  # fmt: skip
    return Check("fail", "influxdb", f"{shown} refused a write: HTTP {reply.status}: {detail}",
                 "see InfluxDB's log (journalctl -u influxdb)")  # fmt: skip


def _influx_v2(settings: Settings, base: str, shown: str) -> Check:
    influx = settings.influxdb
    headers = {"Authorization": f"Token {influx.token.get_secret_value() if influx.token else ''}"}
    query = urllib.parse.urlencode({"name": influx.bucket or "", "org": influx.org or ""})
    reply = _request(f"{base}/api/v2/buckets?{query}", headers=headers, verify_ssl=influx.verify_ssl)
    if reply.status in (401, 403):
        return Check("fail", "influxdb", f"{shown} refused the token (HTTP {reply.status})",
                     "create an InfluxDB API token with write access to the bucket; set influxdb.token")  # fmt: skip
    if reply.status != 200:
        return Check("fail", "influxdb", f"{shown}/api/v2/buckets: HTTP {reply.status}: {_error_text(reply)}",
                     "check influxdb.org and influxdb.bucket")  # fmt: skip
    try:
        buckets = [b.get("name") for b in json.loads(reply.body).get("buckets", [])]
    except (ValueError, AttributeError):
        buckets = []
    if influx.bucket not in buckets:
        return Check("fail", "influxdb", f"{shown}: bucket {influx.bucket!r} not found in org {influx.org!r}",
                     "create the bucket (influx bucket create) or correct influxdb.bucket / influxdb.org")  # fmt: skip
    return Check("ok", "influxdb", f"{shown}: bucket {influx.bucket!r} is there for the token")


def _error_text(reply: Reply) -> str:
    try:
        return str(json.loads(reply.body).get("error") or "")[:200]
    except (ValueError, AttributeError):
        return reply.body[:200].decode(errors="replace")


# --- state dir, systemd, the daemon ---------------------------------------------------------------------------


def check_state_dir(settings: Settings) -> Iterator[Check]:
    path = Path(settings.state_dir)
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    if not path.exists():
        if os.access(existing, os.W_OK):
            yield Check("ok", "state_dir", f"{path} does not exist yet; the daemon creates it")
        else:
            yield Check("fail", "state_dir", f"{path} does not exist and {existing} is not writable",
                        f"create it for the service user: install -d -m 700 {path} (systemd's StateDirectory= "
                        "does this)")  # fmt: skip
            return
    else:
        if not path.is_dir():
            yield Check("fail", "state_dir", f"{path} is not a directory", "point state_dir at a directory")
            return
        if not os.access(path, os.W_OK | os.X_OK):
            yield Check("fail", "state_dir", f"{path} is not writable by this user (uid {os.geteuid()})",
                        f"run as the service user, or chown it: chown -R homeiq: {path}")  # fmt: skip
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007:
            yield Check("warn", "state_dir", f"{path} is open to every user (mode {mode:o}): it holds the home's "
                        "history", f"chmod o-rwx {path}")  # fmt: skip
        elif os.access(path, os.W_OK):
            yield Check("ok", "state_dir", f"{path} writable, mode {mode:o}")
    free = shutil.disk_usage(existing).free
    need = max(MIN_FREE_BYTES, settings.spool.max_bytes)
    text = f"{free / 2**20:,.0f} MiB free on {existing}"
    if free < MIN_FREE_BYTES:
        yield Check("fail", "disk", text, "free some space: the spool and the databases need room")
    elif free < need:
        yield Check("warn", "disk", f"{text}, less than spool.max_bytes ({settings.spool.max_bytes / 2**20:,.0f} MiB)",
                    "free space, or lower spool.max_bytes")  # fmt: skip
    else:
        yield Check("ok", "disk", text)


def check_systemd() -> Check:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return Check("warn", "systemd", "systemctl not found: not a systemd machine", "run it with `homeiq run`")
    try:
        command = [systemctl, "show", UNIT, "--property=LoadState,ActiveState,SubState,UnitFileState"]
        result = subprocess.run(  # noqa: S603 - a fixed command line
            command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("warn", "systemd", f"systemctl did not answer: {_why(exc)}")
    props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if result.returncode != 0 or not props:
        why = (result.stderr.strip().splitlines() or ["no answer"])[0][:160]
        return Check("warn", "systemd", f"cannot ask systemd: {why}", "on a machine booted with systemd: "
                     "systemctl status homeiq")  # fmt: skip
    if props.get("LoadState") == "not-found":
        return Check("warn", "systemd", f"{UNIT} is not installed", "sudo systemd/install.sh (see docs/systemd.md)")
    active, sub, enabled = props.get("ActiveState"), props.get("SubState"), props.get("UnitFileState")
    text = f"{UNIT} {active} ({sub}), {enabled}"
    if active == "failed":
        return Check("fail", "systemd", text, "journalctl -u homeiq -n 50 says why; then systemctl restart homeiq")
    if active != "active":
        return Check("warn", "systemd", text, "systemctl enable --now homeiq")
    if enabled != "enabled":
        return Check("warn", "systemd", text, "systemctl enable homeiq (start at boot)")
    return Check("ok", "systemd", text)


def check_daemon(settings: Settings) -> Check:
    if not settings.http.enabled:
        return Check("warn", "daemon", "http.enabled is false: cannot ask the daemon", "enable http to use status")
    try:
        doc = status_cli.fetch_status(settings)
    except status_cli.NotRunning as exc:
        return Check("warn", "daemon", f"not running: {exc}", "systemctl start homeiq (or homeiq run)")
    except status_cli.Refused as exc:
        return Check("fail", "daemon", str(exc), "use the same http.token as the service")
    verdict = doc.get("status", "?")
    reasons = "; ".join(doc.get("reasons", []))[:200]
    text = f"running {doc.get('version', '?')}, up {doc.get('uptime_s', 0):.0f} s, {verdict}" + (
        f": {reasons}" if reasons else ""
    )
    return Check("ok" if verdict == "ok" else "warn", "daemon", text, "homeiq status shows the details")
