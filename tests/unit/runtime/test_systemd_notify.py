"""sd_notify: the wire format, the sender on a real datagram socket, and the watchdog's health gate.

The App runs in-process against the embedded store; faults are injected only where a real part cannot be
made to misbehave on cue (a sink write that never returns)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.pipeline.batcher import Batch
from homeiq_daemon.runtime import systemd
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.embedded import HistoryStore
from tests.support.daemon import daemon_settings, wait_for
from tests.support.notify import Message, NotifyListener, parse

LINE = "°C,domain=sensor,entity_id=kitchen_temperature value=21.5 1700000000000000000"


# --- wire format ----------------------------------------------------------------------------------------


def test_notify_address_forms() -> None:
    assert systemd.parse_notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert systemd.parse_notify_address("@abstract/name") == b"\0abstract/name"
    assert systemd.parse_notify_address("vsock:2:1234") is None
    assert systemd.parse_notify_address("@") is None
    assert systemd.parse_notify_address("relative/path") is None


@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z_]{0,15}", fullmatch=True), st.text(), min_size=1))
def test_encoded_assignments_are_one_line_each(assignments: dict[str, str]) -> None:
    payload = systemd.encode_notify(assignments).decode()
    lines = payload.split("\n")
    assert len(lines) == len(assignments)
    decoded = dict(line.split("=", 1) for line in lines)
    assert decoded == {key: " ".join(value.split()) for key, value in assignments.items()}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
    ],
)
def test_watchdog_interval_from_environment(environ: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval_s(environ, os.getpid()) == expected


# --- the sender on a real socket -----------------------------------------------------------------------


@pytest.mark.parametrize("abstract", [True, False])
def test_notifier_delivers_datagrams(abstract: bool) -> None:
    short_dir = Path(f"/tmp/hiq-n-{os.getpid()}")  # AF_UNIX paths are limited to 107 bytes
    short_dir.mkdir(exist_ok=True)
    listener = NotifyListener(None if abstract else str(short_dir / "notify"))
    try:
        notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": listener.env_value})
        assert notifier.enabled
        assert notifier.notify(READY=1, STATUS="line one\nline two")
        assert notifier.notify(WATCHDOG=1)
        notifier.close()
        time.sleep(0.01)
        got = [m.fields for m in listener.poll()]
        assert got == [{"READY": "1", "STATUS": "line one line two"}, {"WATCHDOG": "1"}]
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            (short_dir / "notify").unlink()
        short_dir.rmdir()


def test_notifier_is_silent_without_socket_and_never_raises(tmp_path: Path) -> None:
    off = systemd.Notifier.from_environ({})
    assert not off.enabled
    assert off.notify(READY=1) is False
    gone = systemd.Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled
    assert gone.notify(READY=1) is False  # ENOENT: counted, not raised
    assert gone.failed == 1
    gone.close()


def test_status_line_reads_well() -> None:
    stats = Stats()
    stats.hub_state = "connected"
    stats.sink_state = "down"
    stats.sink_down_since = time.time() - 300
    stats.points_written = 12345
    stats.spool_points = 2000
    line = systemd.status_line(stats, 4.25)
    assert line == "hub connected, sink down 5 min, 4.2 events/s, 12,345 written, spool 2,000 points"
    stats.sink_state = "embedded"
    stats.spool_points = 0
    stats.points_dropped["spool_full"] = 7
    line = systemd.status_line(stats, 0.0, hub_configured=False)
    assert line == "hub not configured, embedded history, 0.0 events/s, 12,345 written, spool empty, 7 dropped"


# --- the service lifecycle in-process -------------------------------------------------------------------


class HangingHistory(HistoryStore):
    """The real embedded store, with a switch that makes a write never return (fault injection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hang = False
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        if self.hang:
            self.hanging.set()
            await self.release.wait()
        return await super().write(body, points, gzipped=gzipped)


class WedgeableApp(App):
    def _build_writer(self) -> HangingHistory:
        s = self.settings
        self.history = HangingHistory(s.history_db_path, retention_days=s.history.retention_days)
        self.stats.sink_state = "embedded"
        return self.history


@contextlib.asynccontextmanager
async def service(
    settings: Settings, *, watchdog_s: float = 0.4, app_class: type[App] = WedgeableApp
) -> AsyncIterator[tuple[App, systemd.ServiceNotifier, NotifyListener, asyncio.Task[None]]]:
    listener = NotifyListener()
    app = app_class(settings)
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": listener.env_value})
    svc = systemd.ServiceNotifier(app, notifier, watchdog_s=watchdog_s, status_interval_s=0.2)
    svc.attach()
    task = asyncio.create_task(app.run())
    try:
        await wait_for(lambda: app.ready.is_set() or task.done(), timeout_s=20)
        if task.done():
            task.result()
        yield app, svc, listener, task
    finally:
        if not task.done():
            app.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=20)
        svc.close()
        listener.close()


def pings(messages: list[Message]) -> list[Message]:
    return [m for m in messages if "WATCHDOG" in m]


async def collect(listener: NotifyListener, seconds: float) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        got += listener.poll()
    return got


async def test_ready_status_watchdog_then_stopping_with_extension(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", shutdown_timeout_s=3.0)
    async with service(settings) as (app, _svc, listener, task):
        assert app.pipeline is not None
        await collect(listener, 0.7)
        app.request_stop()
        await asyncio.wait_for(task, 10)
        listener.poll()
    fields = [m.fields for m in listener.messages]
    assert fields[0] == {"STATUS": "starting"}
    assert fields[1]["READY"] == "1"
    assert fields[1]["STATUS"].startswith("hub not configured, embedded history")
    assert len(pings(listener.messages)) >= 2  # 0.7 s at one ping per 0.2 s
    assert any("events/s" in f.get("STATUS", "") for f in fields[2:])
    stopping = next(i for i, f in enumerate(fields) if "STOPPING" in f)
    assert not any("WATCHDOG" in f for f in fields[stopping:])
    extend = int(fields[stopping + 1]["EXTEND_TIMEOUT_USEC"])
    assert 7_000_000 < extend <= 8_000_000  # the 3 s budget plus 5 s of grace


async def test_pings_stop_while_a_write_is_wedged_and_resume_after(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", batch={"size": 1})
    async with service(settings) as (app, _svc, listener, _task):
        assert isinstance(app.history, HangingHistory)
        assert app.delivery is not None
        app.liveness.stall_s = 0.6
        before = await collect(listener, 0.5)
        assert len(pings(before)) >= 2
        app.history.hang = True
        app.delivery.enqueue(Batch([LINE]))
        await asyncio.wait_for(app.history.hanging.wait(), 5)
        wedged_at = time.monotonic()
        during = await collect(listener, 2.5)
        # Pings continue only until the write has been quiet for stall_s (0.6 s) and the next check runs;
        # the last second of the window (12 ping intervals after the wedge) must have none.
        assert [m for m in pings(during) if m.at > wedged_at + 1.5] == []
        assert any(m.fields.get("STATUS", "").startswith("unhealthy: sink write wedged") for m in during)
        app.history.release.set()
        await wait_for(lambda: app.stats.points_written == 1, timeout_s=5)
        after = await collect(listener, 0.6)
        assert len(pings(after)) >= 2


async def test_pings_stop_when_the_writer_task_is_gone(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state")
    async with service(settings) as (_app, _svc, listener, task):
        await collect(listener, 0.3)
        writer = next(t for t in asyncio.all_tasks() if t.get_name() == "homeiq-delivery-writer")
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        listener.poll()  # pings sent before the task was gone; no callback runs until the next await
        cancelled_at = time.monotonic()
        after = await collect(listener, 1.0)
        assert not task.done()  # the daemon would run on without a writer: exactly the watchdog's case
        assert [m for m in pings(after) if m.at > cancelled_at] == []
        assert any(m.fields.get("STATUS") == "unhealthy: task homeiq-delivery-writer was cancelled" for m in after)


async def test_no_ping_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state")
    async with service(settings, watchdog_s=0.2) as (_app, _svc, listener, _task):
        await collect(listener, 0.3)
        listener.poll()
        time.sleep(0.8)  # a stuck loop: 8 ping intervals pass with no callback running
        assert pings(listener.poll()) == []
        assert len(pings(await collect(listener, 0.4))) >= 2


async def test_sink_down_and_spooling_is_healthy(tmp_path: Path, unused_tcp_port: int) -> None:
    """InfluxDB refusing connections: batches spool, and the watchdog keeps being fed."""
    settings = daemon_settings(
        tmp_path / "state",
        batch={"size": 1},
        influxdb={
            "url": f"http://127.0.0.1:{unused_tcp_port}",
            "timeout_s": 0.5,
            "write_attempts": 1,
            "retry_max_s": 0.2,
            "create_database": False,
        },
    )
    async with service(settings, app_class=App) as (app, _svc, listener, _task):
        assert app.delivery is not None
        app.liveness.stall_s = 0.5
        for i in range(5):
            app.delivery.enqueue(Batch([LINE.replace("21.5", f"{i}.5")]))
        await wait_for(lambda: app.stats.spool_points >= 5, timeout_s=10)
        assert app.stats.sink_state == "down"
        window = await collect(listener, 1.5)
        gaps = [b.at - a.at for a, b in zip(pings(window), pings(window)[1:], strict=False)]
        assert len(gaps) >= 4
        assert max(gaps) < 1.0  # a withheld ping would leave a gap as long as the window
        assert app.liveness.check() is None


async def test_extension_repeats_during_a_long_flush(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", batch={"size": 1}, shutdown_timeout_s=3.0)
    async with service(settings) as (app, _svc, listener, task):
        assert isinstance(app.history, HangingHistory)
        assert app.delivery is not None
        app.history.hang = True
        app.delivery.enqueue(Batch([LINE]))
        await asyncio.wait_for(app.history.hanging.wait(), 5)
        app.request_stop()
        await asyncio.wait_for(task, 15)
        listener.poll()
    extensions = [int(m.fields["EXTEND_TIMEOUT_USEC"]) for m in listener.with_key("EXTEND_TIMEOUT_USEC")]
    assert len(extensions) >= 2
    assert extensions == sorted(extensions, reverse=True)  # the remaining budget, shrinking
    assert extensions[0] <= 8_000_000


def test_notify_failure_leaves_a_status() -> None:
    listener = NotifyListener()
    try:
        systemd.notify_failure(
            "config error: influxdb.url: must look like http://localhost:8086", {"NOTIFY_SOCKET": listener.env_value}
        )
        time.sleep(0.01)
        assert [m.fields for m in listener.poll()] == [
            {"STATUS": "config error: influxdb.url: must look like http://localhost:8086"}
        ]
    finally:
        listener.close()


def test_parse_rejects_non_assignments() -> None:
    assert parse(b"READY=1\nSTATUS=a=b") == {"READY": "1", "STATUS": "a=b"}
    with pytest.raises(AssertionError):
        parse(b"READY")
