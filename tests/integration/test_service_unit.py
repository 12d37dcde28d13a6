"""systemd/homeiq.service: what systemd's own tools say about it, that it agrees with the code (exit
codes, credential names, timeouts), and the daemon running as the unit would run it: notify socket,
watchdog, and the kernel's refusal of writable+executable memory that MemoryDenyWriteExecute= imposes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from homeiq_daemon.api.connections import RESERVED_FDS, connection_limit
from homeiq_daemon.config import CREDENTIAL_FILES, Settings
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_NOPERM, EXIT_USAGE
from tests.support.daemon import stop_deadline_s
from tests.support.notify import NotifyListener

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "homeiq.service"
HOMEIQ = Path(sys.executable).with_name("homeiq")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: apt-get install systemd (.ci/run does)"
    return path


def unit_entries(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (unit files repeat keys; configparser cannot read them)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


def one(entries: dict[str, list[str]], key: str) -> str:
    (value,) = entries[key]
    return value


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def staged_root(tmp_path: Path) -> Path:
    """A root with systemd's own units (verify resolves dependencies like sysinit.target there) and an
    executable where ExecStart= and ExecReload= point."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for path in ("opt/homeiq/venv/bin/homeiq", "bin/kill"):
        exe = root / path
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/homeiq.service")
    return root


# --- systemd's verdicts --------------------------------------------------------------------------------


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    root = staged_root(tmp_path)
    result = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "homeiq.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 even for "Unknown key" or "Invalid syntax" warnings: any output is a finding.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_systemd_analyze_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: the same staging with a typo is reported."""
    root = staged_root(tmp_path)
    unit = root / "etc/systemd/system/homeiq.service"
    unit.write_text(unit.read_text().replace("NotifyAccess=main", "NotifyAcess=main"))
    result = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "homeiq.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown key 'NotifyAcess'" in result.stderr


def test_security_exposure_is_at_most_1_1() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    match = re.search(r"Overall exposure level for homeiq\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= 1.1, result.stdout  # the level this unit reached; never worse


# --- the unit agrees with the code ------------------------------------------------------------------------


def test_descriptor_limit_leaves_room_for_http_clients_and_the_reserve() -> None:
    limit = int(one(unit_entries(UNIT), "Service.LimitNOFILE"))
    configured = Settings().http.max_connections
    assert limit >= configured + RESERVED_FDS
    assert connection_limit(configured, limit) == configured  # the default is not lowered under the unit


def test_unit_settings_match_the_daemon() -> None:
    unit = unit_entries(UNIT)
    assert one(unit, "Service.Type") == "notify"
    assert one(unit, "Service.NotifyAccess") == "main"
    assert one(unit, "Service.ExecStart") == "/opt/homeiq/venv/bin/homeiq run"
    assert one(unit, "Service.Restart") == "on-failure"
    assert set(one(unit, "Service.RestartPreventExitStatus").split()) == {
        "2",  # argparse's own exit code for a bad command line
        str(EXIT_USAGE),
        str(EXIT_NOPERM),
        str(EXIT_CONFIG),
    }
    assert one(unit, "Service.StateDirectory") == "homeiq"
    assert one(unit, "Service.ConfigurationDirectory") == "homeiq"
    loaded = dict(v.split(":", 1) for v in unit["Service.LoadCredential"])
    assert loaded == {name: f"/etc/homeiq/credentials/{name}" for name in CREDENTIAL_FILES}
    # Every credential has an empty default, so a missing file does not stop the start.
    assert sorted(unit["Service.SetCredential"]) == sorted(f"{name}:\\n" for name in CREDENTIAL_FILES)
    defaults = Settings.model_fields["shutdown_timeout_s"].default
    assert seconds(one(unit, "Service.TimeoutStopSec")) >= defaults + 5
    assert seconds(one(unit, "Service.WatchdogSec")) >= 30
    assert one(unit, "Service.MemoryDenyWriteExecute") == "yes"
    assert one(unit, "Service.RestrictAddressFamilies") == "AF_INET AF_INET6 AF_UNIX"


# --- the daemon as the unit runs it -----------------------------------------------------------------------

# What MemoryDenyWriteExecute= enforces, set with the kernel's own switch (Linux 6.3+), which execve keeps:
# a small launcher sets it and execs the command (no preexec_fn in a threaded test process).
_MDWE_LAUNCHER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"prctl(PR_SET_MDWE): {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def deny_write_execute(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", _MDWE_LAUNCHER, *argv]


def mdwe_unsupported_reason() -> str | None:
    """None when this kernel enforces PR_SET_MDWE (a W+X mapping is refused), else why not."""
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    result = subprocess.run(
        deny_write_execute([sys.executable, "-c", probe]), capture_output=True, timeout=30, check=False
    )
    if result.returncode != 0 and b"Permission denied" in result.stderr:
        return None
    said = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["a W+X mapping was allowed"]
    return f"kernel {os.uname().release} does not enforce MemoryDenyWriteExecute (PR_SET_MDWE, Linux 6.3+): {said[0]}"


def _service_env(tmp_path: Path, listener: NotifyListener) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "WATCHDOG_"))}
    (tmp_path / "etc").mkdir()
    env.update(
        NOTIFY_SOCKET=listener.env_value,
        WATCHDOG_USEC="2000000",
        STATE_DIRECTORY=str(tmp_path / "state"),
        CONFIGURATION_DIRECTORY=str(tmp_path / "etc"),
        HOMEIQ_HTTP__PORT="0",
        HOMEIQ_LOG__FORMAT="json",
    )
    return env


@pytest.mark.parametrize("mdwe", [False, True], ids=["plain", "memory-deny-write-execute"])
def test_notify_sequence_of_the_daemon_as_the_unit_runs_it(tmp_path: Path, mdwe: bool) -> None:
    """Process start -> READY=1 -> WATCHDOG=1 every half interval -> SIGTERM -> STOPPING=1 -> exit 0, with
    the embedded store as sink and a recorded event stream; once as is, once in a process that may not map
    W+X memory (skipped, with the reason, on a kernel without PR_SET_MDWE)."""
    if mdwe and (reason := mdwe_unsupported_reason()) is not None:
        pytest.skip(reason)
    listener = NotifyListener()
    replay = ROOT / "examples" / "home.jsonl"
    argv = [str(HOMEIQ), "run", "--replay", str(replay), "--keep-running"]
    proc = subprocess.Popen(
        deny_write_execute(argv) if mdwe else argv,
        env=_service_env(tmp_path, listener),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        listener.wait_until(lambda ms: any("READY" in m for m in ms), timeout_s=60)
        listener.wait_until(lambda ms: len([m for m in ms if "WATCHDOG" in m]) >= 4, timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=stop_deadline_s(Settings()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"homeiq run did not exit within {stop_deadline_s(Settings()):g} s of SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.poll()
        listener.close()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    kinds = [next(iter(m.fields)) for m in listener.messages]
    ready = kinds.index("READY")
    stopping = kinds.index("STOPPING")
    assert kinds[:ready] == ["STATUS"]  # "starting"
    assert "WATCHDOG" in kinds[ready:stopping]
    assert "WATCHDOG" not in kinds[stopping:]
    assert "EXTEND_TIMEOUT_USEC" in listener.messages[stopping + 1].fields
    # No ping was held back: the daemon stayed healthy the whole run.
    assert not any(m.fields.get("STATUS", "").startswith("unhealthy") for m in listener.messages)
    assert b'"event":"systemd.ready"' in stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "history.db")) as db:
        (rows,) = db.execute("SELECT count(*) FROM points").fetchone()
    assert rows > 100  # the replayed events went through the embedded store


def test_a_config_error_exits_78_and_leaves_a_status(tmp_path: Path) -> None:
    listener = NotifyListener()
    env = _service_env(tmp_path, listener)
    env["HOMEIQ_INFLUXDB__URL"] = "influx.local:8086"
    try:
        result = subprocess.run([str(HOMEIQ), "run"], env=env, capture_output=True, timeout=60, check=False)
        listener.wait_until(lambda ms: len(ms) >= 1, timeout_s=30)
    finally:
        listener.close()
    assert result.returncode == EXIT_CONFIG
    (message,) = listener.messages
    assert message.fields["STATUS"].startswith("config error: influxdb.url:")
