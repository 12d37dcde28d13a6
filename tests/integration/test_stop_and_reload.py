"""Stopping and reloading: a busy HTTP port is a restartable exit (69), SIGHUP reloads what it can and never
kills the daemon, and cancellation always wins over clean-up errors so a stop cannot hang."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.errors import EXIT_UNAVAILABLE
from homeiq_daemon.metadata.registry import Area
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.runtime.supervisor import bounded

ROOT = Path(__file__).resolve().parents[2]
HOMEIQ = Path(sys.executable).with_name("homeiq")


def _env(tmp_path: Path, config: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "WATCHDOG_"))}
    env.update(HOMEIQ_STATE_DIR=str(tmp_path / "state"), HOMEIQ_LOG__FORMAT="json")
    if config is not None:
        env["HOMEIQ_CONFIG"] = str(config)
    return env


def test_http_port_in_use_exits_69_which_the_unit_restarts(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        env = _env(tmp_path) | {"HOMEIQ_HTTP__ENABLED": "true", "HOMEIQ_HTTP__PORT": str(port)}
        result = subprocess.run([str(HOMEIQ), "run"], env=env, capture_output=True, text=True, timeout=60,
                                check=False)
    finally:
        holder.close()
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"homeiq: error: http: cannot listen on 127.0.0.1:{port}"), last
    assert "Traceback" not in result.stderr
    unit = (ROOT / "systemd" / "homeiq.service").read_text()
    prevented = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.M)
    assert prevented is not None
    assert str(EXIT_UNAVAILABLE) not in prevented.group(1).split()
    assert re.search(r"^Restart=on-failure$", unit, re.M)


class _Daemon:
    """``homeiq run`` as a child process; its JSON log lines collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([str(HOMEIQ), "run"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "raw", "line": line})

    def wait_event(self, name: str, count: int = 1, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in list(self.events) if e.get("event") == name]
            if len(found) >= count:
                return found[count - 1]
            assert self.proc.poll() is None, f"the daemon exited ({self.proc.returncode}) waiting for {name}"
            time.sleep(0.05)
        raise AssertionError(f"no {name} log line within {timeout_s} s: {self.events[-5:]}")


def test_sighup_reloads_log_and_mapping_names_the_rest_and_survives_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "homeiq.toml"
    config.write_text('[log]\nlevel = "info"\n[http]\nenabled = false\n')
    daemon = _Daemon(_env(tmp_path, config))
    try:
        daemon.wait_event("homeiq.starting")
        daemon.wait_event("homeiq.no_source")
        config.write_text('[log]\nlevel = "debug"\n[http]\nenabled = false\nport = 9999\n'
                          '[mapping.exclude]\ndomains = ["sensor"]\n')
        deadline = time.monotonic() + 30
        while not [e for e in daemon.events if e.get("event") == "homeiq.reloaded"] and time.monotonic() < deadline:
            daemon.proc.send_signal(signal.SIGHUP)  # repeated until the handler is in place (READY)
            time.sleep(0.2)
        reloaded = daemon.wait_event("homeiq.reloaded")
        assert reloaded["reloaded"] == ["log", "mapping"]
        assert reloaded["needs_restart"] == ["http"]
        config.write_text('[log]\nlevel = "loud"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.wait_event("homeiq.reload_failed")
        assert failed["error"].startswith("log.level:")
        assert daemon.proc.poll() is None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


# --- cancellation wins ----------------------------------------------------------------------------------


async def test_a_flush_cancelled_inside_commit_raises_cancelled_not_the_rollback_error(tmp_path: Path) -> None:
    """The race seen at stop: cancelled while SQLite's thread runs the COMMIT; the ROLLBACK that follows finds
    no transaction. Fault injection orders the two as the thread did."""
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    try:
        conn = store._writer
        assert conn is not None
        real_execute = conn.execute
        in_commit = asyncio.Event()

        async def execute(sql: str, *args: Any) -> Any:
            if sql == "COMMIT":
                in_commit.set()
                await asyncio.Event().wait()  # the answer from the thread never comes before the cancel
            if sql == "ROLLBACK":
                await real_execute("COMMIT")  # the queued COMMIT finished first
            return await real_execute(sql, *args)

        conn.execute = execute  # type: ignore[method-assign]
        flush = asyncio.create_task(store.replace_areas([Area("kitchen", "Kitchen")]))
        await asyncio.wait_for(in_commit.wait(), 10)
        flush.cancel()
        done, _ = await asyncio.wait({flush}, timeout=10)
        assert done, "the cancelled flush did not end"
        assert flush.cancelled(), f"a clean-up error replaced the cancellation: {flush.exception()!r}"
        conn.execute = real_execute  # type: ignore[method-assign]
    finally:
        await store.close()


async def test_the_scheduler_stops_when_a_tick_fails_while_cancelled() -> None:
    started = asyncio.Event()

    async def flush() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active") from None

    scheduler = Scheduler(Stats())
    scheduler.every("metadata_flush", 0.01, flush, run_at_start=True)
    runner = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(started.wait(), 10)
    runner.cancel()
    done, _ = await asyncio.wait({runner}, timeout=10)
    assert done, "the scheduler kept looping after it was cancelled"
    assert scheduler.jobs[0].failures == 0


async def test_a_stop_step_that_ignores_cancellation_is_left_behind_at_its_deadline() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallows every cancel, as a wedged clean-up would

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await bounded("stubborn", asyncio.shield(task), time.monotonic(), floor_s=0.2)  # returns at its deadline
    assert not task.done()  # ... while the step itself is still running: the stop went on without it
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=10)
    assert task.done()
