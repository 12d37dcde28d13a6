"""The daemon as a separate process (``python -m homeiq_daemon run --config FILE``), the way a user runs it,
with its own config file, state dir and HTTP port; for tests of the status page, ``homeiq status`` and
``homeiq doctor`` against the running daemon."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from homeiq_daemon.config import Settings
from homeiq_daemon.runtime.systemd import STOP_GRACE_S
from tests.support.daemon import stop_process
from tests.support.influxd import free_port

DEFAULT_STOP_DEADLINE_S = float(Settings.model_fields["shutdown_timeout_s"].default) + STOP_GRACE_S


class DaemonProcess:
    def __init__(self, root: Path, config_toml: str, *, token: str | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = token
        self.state_dir = root / "state"
        self.config_path = root / "homeiq.toml"
        http = f'[http]\nport = {self.port}\n' + (f'token = "{token}"\n' if token else "")
        self.config_path.write_text(f'state_dir = "{self.state_dir}"\n{config_toml}\n{http}')
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_") and k != "JOURNAL_STREAM"}
        env["HOMEIQ_LOG__FORMAT"] = "json"
        return env

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``homeiq --config FILE ARGS…`` as a user types it."""
        return subprocess.run(
            [sys.executable, "-m", "homeiq_daemon", "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout_s, env=self.env(), stdin=subprocess.DEVNULL,
            check=False,
        )

    def start(self, timeout_s: float = 90.0, *, wait_connected: bool = True) -> None:
        """Start, and wait until the API answers (and HA is connected, when configured and asked to)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homeiq_daemon", "--config", str(self.config_path), "run"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env(), start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status = self.status()
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
                continue
            ha = status["home_assistant"]
            if not wait_connected or ha["connected"] or not ha["configured"]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the daemon was not connected within {timeout_s}s: {self.log_tail()}")

    def stop(self, timeout_s: float = DEFAULT_STOP_DEADLINE_S) -> None:
        """SIGTERM; fails the test when the daemon crashed (exit code other than 0) or overran its documented
        stop deadline (shutdown_timeout_s + the grace it asks systemd for; killed after the report)."""
        if self.proc is None:
            return
        stop_process(self.proc, timeout_s, self.log_tail)

    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def basic_auth(self) -> str:
        return "Basic " + base64.b64encode(f"homeiq:{self.token}".encode()).decode()

    def get(self, path: str, timeout_s: float = 10.0) -> Any:
        request = urllib.request.Request(self.base_url + path, headers=self.auth_header())
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/v1/status")
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> DaemonProcess:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()
        elif self.proc is not None and self.proc.poll() is None:  # the test failed already: just end it
            self.proc.kill()
            self.proc.wait(timeout=10)


def connected_config(ha_url: str, ha_token: str, influx_url: str, database: str) -> str:
    """The TOML of a daemon fed by a Home Assistant and writing to an InfluxDB 1.x database."""
    return (
        f'[home_assistant]\nurl = "{ha_url}"\ntoken = "{ha_token}"\n'
        f'[influxdb]\nurl = "{influx_url}"\ndatabase = "{database}"\n'
        "[batch]\nflush_interval_s = 0.2\n"
    )


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})")
