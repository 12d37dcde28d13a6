"""`homeiq status` and `homeiq doctor` as a user runs them (a separate process, the daemon's config file),
against a running daemon connected to the real Home Assistant and a real influxd; and with parts missing:
nothing running (exit 3), HA unreachable (degraded, exit 1), and doctor's failing checks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon_process import DaemonProcess, connected_config
from tests.support.influxd import InfluxServer
from tests.support.real_ha import RealHomeAssistant

pytestmark = [pytest.mark.ha, pytest.mark.influxd]

TOKEN = "status-cli-token"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(tmp_path: Path, real_ha: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str) -> Iterator[
    DaemonProcess
]:
    config = connected_config(real_ha.base_url, real_ha.token, influxd_server.url, influx_db)
    with DaemonProcess(tmp_path, config, token=TOKEN) as process:
        yield process


def lines_by_check(stdout: str) -> dict[str, str]:
    """doctor's output: check name -> its whole line."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "warn", "fail"):
            found.setdefault(parts[1], line)
    return found


def test_status_of_a_healthy_daemon(daemon: DaemonProcess, influxd_server: InfluxServer) -> None:
    result = daemon.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.splitlines()[0].endswith("· OK")
    assert "Home Assistant  connected since" in out
    assert f"InfluxDB 1.x at {influxd_server.url}" in out
    assert TOKEN not in out
    as_json = daemon.cli("status", "--json")
    assert as_json.returncode == 0
    doc = json.loads(as_json.stdout)
    api = daemon.status()
    assert doc["version"] == api["version"]
    assert doc["started_at"] == api["started_at"]
    assert doc["home_assistant"]["connected"] is True


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    idle = DaemonProcess(tmp_path, "")  # its config, never started
    result = idle.cli("status")
    assert result.returncode == 3
    assert "homeiq is not running" in result.stderr
    assert f"127.0.0.1:{idle.port}" in result.stderr


def test_status_degraded_when_home_assistant_is_unreachable(tmp_path: Path) -> None:
    config = f'[home_assistant]\nurl = "http://127.0.0.1:{closed_port()}"\ntoken = "unused"\n'
    process = DaemonProcess(tmp_path, config)
    process.start(wait_connected=False)
    try:
        result = process.cli("status")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "DEGRADED" in result.stdout.splitlines()[0] or "CRITICAL" in result.stdout.splitlines()[0]
        assert "  • home assistant" in result.stdout
    finally:
        process.stop()


def test_doctor_on_a_working_setup(daemon: DaemonProcess, real_ha: RealHomeAssistant,
                                   influxd_server: InfluxServer, influx_db: str) -> None:  # fmt: skip
    result = daemon.cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_by_check(result.stdout)
    ha_config = real_ha.config()
    assert checks["config"].startswith("ok")
    assert checks["home_assistant"].startswith("ok")
    assert f"Home Assistant {ha_config['version']}" in checks["home_assistant"]
    recorder_on = "recorder" in ha_config["components"]
    assert checks["recorder"].startswith("ok" if recorder_on else "warn")
    assert checks["clock"].startswith("ok")  # the same machine's clock
    assert checks["influxdb"].startswith("ok")
    assert "took a write" in checks["influxdb"]
    assert checks["state_dir"].startswith("ok")
    assert checks["disk"].startswith("ok")
    assert "systemd" in checks  # ok or warn: CI machines may not run systemd as init
    assert checks["daemon"].startswith("ok")
    assert "running" in checks["daemon"]
    for secret in (real_ha.token, TOKEN):
        assert secret not in result.stdout + result.stderr
    # The scratch point went away again.
    measurements = influxd_server.query("SHOW MEASUREMENTS", db=influx_db)
    assert "homeiq_doctor" not in json.dumps(measurements)


def test_doctor_names_what_fails_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state dir should be")
    config = (
        f'[home_assistant]\nurl = "http://127.0.0.1:{closed_port()}"\ntoken = "unused"\n'
        f'[influxdb]\nurl = "http://127.0.0.1:{closed_port()}"\n'
    )
    process = DaemonProcess(tmp_path / "d", config)
    process.config_path.write_text(process.config_path.read_text().replace(str(process.state_dir), str(blocker)))
    result = process.cli("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = lines_by_check(result.stdout)
    assert checks["config"].startswith("ok")
    for name, fix in (("home_assistant", "start Home Assistant"), ("influxdb", "start InfluxDB"),
                      ("state_dir", "point state_dir at a directory")):  # fmt: skip
        assert checks[name].startswith("fail"), checks[name]
        assert f"→ fix: {fix}" in checks[name]
    assert checks["daemon"].startswith("warn")  # nothing runs with this config
    assert "failed" in result.stdout.splitlines()[-1]


def test_doctor_reports_a_bad_config_as_a_failed_check(tmp_path: Path) -> None:
    process = DaemonProcess(tmp_path, "[influxdb]\nurll = \"http://127.0.0.1:1\"\n")
    result = process.cli("doctor")
    assert result.returncode == 1
    checks = lines_by_check(result.stdout)
    assert checks["config"].startswith("fail")
    assert "urll" in checks["config"]
