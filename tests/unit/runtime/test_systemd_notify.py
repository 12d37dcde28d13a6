"""sd_notify: the wire format, the sender on a real datagram socket, and the watchdog's health gate.

The App runs in-process against the embedded store; faults are injected only where a real part cannot be
made to misbehave on cue (a sink write that never returns)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.model import Batch
from homeiq_daemon.runtime import systemd
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.embedded import HistoryStore
from tests.support.daemon import daemon_settings, eventually, start_app, stop_app
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
        listener.wait_until(lambda got: len(got) >= 2, 30)
        got = [m.fields for m in listener.messages]
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
    try:
        task = await start_app(app)
        try:
            yield app, svc, listener, task
        finally:
            await stop_app(app, task)  # fails the test on a crash or a stop past its deadline
    finally:
        svc.close()
        listener.close()


def pings(messages: list[Message]) -> list[Message]:
    return [m for m in messages if "WATCHDOG" in m]


async def until_count(listener: NotifyListener, count: Callable[[], int], more: int, what: str) -> None:
    """Wait until ``count()`` grew by ``more`` (counted by the notifier, not measured on a clock). The listener
    is drained meanwhile: a full datagram queue would make the sender drop messages."""
    target = count() + more

    def reached() -> bool:
        listener.poll()
        return count() >= target

    await eventually(reached, f"{more} more {what}", detail=count)


async def until_pings(svc: systemd.ServiceNotifier, listener: NotifyListener, more: int) -> None:
    await until_count(listener, lambda: svc.pings, more, "watchdog pings")


async def until_withheld(svc: systemd.ServiceNotifier, listener: NotifyListener, more: int) -> None:
    await until_count(listener, lambda: svc.withheld, more, "withheld pings")


def after_first(messages: list[Message], status_prefix: str) -> list[Message]:
    """The messages after the first STATUS starting with ``status_prefix`` (datagrams keep their order)."""
    index = next(i for i, m in enumerate(messages) if m.fields.get("STATUS", "").startswith(status_prefix))
    return messages[index + 1:]


async def test_ready_status_watchdog_then_stopping_with_extension(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", shutdown_timeout_s=3.0)
    async with service(settings) as (app, svc, listener, task):
        assert app.pipeline is not None
        await until_pings(svc, listener, 2)

        def periodic_status() -> bool:
            listener.poll()
            return any("events/s" in m.fields.get("STATUS", "") for m in listener.messages[2:])

        await eventually(periodic_status, "a periodic status line after READY")
        app.request_stop()
        await asyncio.wait_for(task, 30)
        listener.poll()
    fields = [m.fields for m in listener.messages]
    assert fields[0] == {"STATUS": "starting"}
    assert fields[1]["READY"] == "1"
    assert fields[1]["STATUS"].startswith("hub not configured, embedded history")
    assert len(pings(listener.messages)) >= 2
    assert any("events/s" in f.get("STATUS", "") for f in fields[2:])
    stopping = next(i for i, f in enumerate(fields) if "STOPPING" in f)
    assert not any("WATCHDOG" in f for f in fields[stopping:])
    extend = int(fields[stopping + 1]["EXTEND_TIMEOUT_USEC"])
    assert 7_000_000 < extend <= 8_000_000  # the 3 s budget plus 5 s of grace


async def test_pings_stop_while_a_write_is_wedged_and_resume_after(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", batch={"size": 1})
    async with service(settings) as (app, svc, listener, _task):
        assert isinstance(app.history, HangingHistory)
        assert app.delivery is not None
        app.liveness.stall_s = 0.6
        await until_pings(svc, listener, 2)
        app.history.hang = True
        app.delivery.enqueue(Batch([LINE]))
        await asyncio.wait_for(app.history.hanging.wait(), 30)
        # Pings go on until the write has been quiet for stall_s; from then on every check withholds it.
        await until_withheld(svc, listener, 1)
        await until_withheld(svc, listener, 3)
        listener.poll()
        during = after_first(listener.messages, "unhealthy: sink write wedged")
        assert pings(during) == [], "no ping once the wedged write was reported"
        released_at = len(listener.messages)
        app.history.release.set()
        await eventually(lambda: app.stats.points_written == 1, "the released write")
        await until_pings(svc, listener, 2)
        assert len(pings(listener.messages[released_at:])) >= 2, "pings resume after the write completes"


async def test_pings_stop_while_the_writer_task_is_gone_and_resume_after_its_restart(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state")
    async with service(settings) as (app, svc, listener, task):
        app.supervisor.first_backoff_s = 30.0  # the dead writer stays dead until the test restarts it sooner
        await until_pings(svc, listener, 1)
        writer = next(t for t in asyncio.all_tasks() if t.get_name() == "homeiq-delivery-writer")
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        listener.poll()  # pings sent before the task was gone; no callback runs until the next await
        cancelled_at = len(listener.messages)
        await until_withheld(svc, listener, 2)
        after = listener.messages[cancelled_at:]
        assert not task.done()
        assert pings(after) == []
        assert any(m.fields.get("STATUS") == "unhealthy: task homeiq-delivery-writer was cancelled" for m in after)
        # The supervisor starts the writer again (here without waiting out the backoff); pings resume.
        assert app.supervisor.restart_count.get("homeiq-delivery-writer") == 1
        app.supervisor.restart_now()
        await eventually(lambda: any(t.get_name() == "homeiq-delivery-writer" and not t.done()
                                     for t in asyncio.all_tasks()), "the writer restarted")  # fmt: skip
        await until_pings(svc, listener, 1)


async def test_no_ping_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", shutdown_timeout_s=3.0)
    async with service(settings, watchdog_s=0.2) as (_app, svc, listener, _task):
        await until_pings(svc, listener, 1)
        listener.poll()
        sent = svc.pings
        time.sleep(0.8)  # the fault itself: a stuck loop, 8 ping intervals pass with no callback running
        assert svc.pings == sent
        assert pings(listener.poll()) == []
        unblocked_at = len(listener.messages)
        await until_pings(svc, listener, 2)
        assert len(pings(listener.messages[unblocked_at:])) >= 2


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
    async with service(settings, app_class=App) as (app, svc, listener, _task):
        assert app.delivery is not None
        app.liveness.stall_s = 0.5
        for i in range(5):
            app.delivery.enqueue(Batch([LINE.replace("21.5", f"{i}.5")]))
        await eventually(lambda: app.stats.spool_points >= 5, "5 points in the spool")
        assert app.stats.sink_state == "down"
        # Every check while spooling pings: none is withheld (a withheld one would be counted and reported).
        await until_pings(svc, listener, 5)
        assert svc.withheld == 0
        assert not any(m.fields.get("STATUS", "").startswith("unhealthy") for m in listener.messages)
        assert app.liveness.check() is None


async def test_extension_repeats_during_a_long_flush(tmp_path: Path) -> None:
    settings = daemon_settings(tmp_path / "state", batch={"size": 1}, shutdown_timeout_s=3.0)
    async with service(settings) as (app, _svc, listener, task):
        assert isinstance(app.history, HangingHistory)
        assert app.delivery is not None
        app.history.hang = True
        app.delivery.enqueue(Batch([LINE]))
        await asyncio.wait_for(app.history.hanging.wait(), 30)
        app.request_stop()
        await asyncio.wait_for(task, 30)
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
        listener.wait_until(lambda got: len(got) >= 1, 30)
        assert [m.fields for m in listener.messages] == [
            {"STATUS": "config error: influxdb.url: must look like http://localhost:8086"}
        ]
    finally:
        listener.close()


def test_parse_rejects_non_assignments() -> None:
    assert parse(b"READY=1\nSTATUS=a=b") == {"READY": "1", "STATUS": "a=b"}
    with pytest.raises(AssertionError):
        parse(b"READY")
