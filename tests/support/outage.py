"""Outage tests: fast daemon settings, in-process ``App`` helpers and ``homeiq run`` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.app import App
from homeiq_daemon.runtime.systemd import STOP_GRACE_S
from tests.support.daemon import stop_app, stop_process, wait_until

__all__ = ["DaemonProcess", "caught_up", "outage_settings", "settings_env", "stop_app", "wait_until"]


def outage_settings(state_dir: Path, url: str, db: str, **overrides: Any) -> dict[str, Any]:
    """Small, fast settings: short timeouts and retries, small batches, real fsync."""
    values: dict[str, Any] = {
        "state_dir": state_dir,
        "shutdown_timeout_s": 5.0,
        "influxdb": {"url": url, "database": db, "timeout_s": 1.0, "write_attempts": 2, "retry_max_s": 1.0},
        "batch": {"size": 250, "flush_interval_s": 0.2, "max_pending_batches": 4},
        "http": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def settings_env(values: dict[str, Any]) -> dict[str, str]:
    """The same settings as environment variables, for ``homeiq run`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_")}
    for key, value in values.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                env[f"HOMEIQ_{key.upper()}__{sub.upper()}"] = str(item).lower() if isinstance(item, bool) else str(item)
        else:
            env[f"HOMEIQ_{key.upper()}"] = str(value)
    env["HOMEIQ_LOG__FORMAT"] = "json"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def caught_up(app: App, events: int) -> bool:
    d = app.delivery
    p = app.pipeline
    return (
        d is not None
        and p is not None
        and sum(app.stats.events_received.values()) >= events
        and p.pending_points == 0
        and d.is_up
        and d.backlog == 0
        and app.stats.spool_records == 0
        and d.spool.stats().records == 0
    )


class DaemonProcess:
    """``homeiq run`` in a subprocess with JSON logs on stderr, collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str], python: str = sys.executable) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [python, "-m", "homeiq_daemon", "run", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                event = {"event": "raw", "line": line.decode(errors="replace").rstrip()}
            with self._lock:
                self.events.append(event)

    def seen(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait_for(self, name: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self.seen(name)
            if event is not None:
                return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} log event within {timeout_s} s; log: {self.events[-20:]}")

    def wait(self, timeout_s: float) -> int:
        rc = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return rc

    def stop(self, shutdown_timeout_s: float, *, expect_rc: int | None = 0) -> int:
        """SIGTERM and wait, failing the test on a hang past the documented deadline or a wrong exit code."""
        try:
            return stop_process(self.proc, shutdown_timeout_s + STOP_GRACE_S, lambda: self.events[-10:],
                                expect_rc=expect_rc)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
