"""SIGTERM: ``homeiq run`` flushes its in-memory batch to InfluxDB, or to the spool when InfluxDB hangs, within
``shutdown_timeout_s``, and exits 0 (real influxd, real subprocess, real signal)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.spool import Spool
from tests.support.influxd import InfluxServer
from tests.support.outage import DaemonProcess, caught_up, outage_settings, settings_env, stop_app, wait_until
from tests.support.pointcheck import compare, expected_points, stored_points, write_recording
from tests.support.recording import generate_events

pytestmark = [pytest.mark.influxd]

# The batch is never flushed by size or time while the replay runs: only the stop can send it. The recording
# lasts 10 s at its recorded pace, so the stop always comes in the middle of it (the replay flushes at its end).
HOLD_IN_MEMORY = {"size": 100_000, "flush_interval_s": 3600.0, "max_pending_batches": 4}
EVENTS, RATE_PER_S = 10_000, 1000.0


def sigterm_and_wait(daemon: DaemonProcess, timeout_s: float) -> tuple[int, float]:
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    rc = daemon.wait(timeout_s=timeout_s + 10)
    return rc, time.monotonic() - started


def received_before_stop(daemon: DaemonProcess, messages: list[dict[str, Any]], tmp_path: Path) -> Path:
    """The part of the recording the daemon took before it stopped (from its ``homeiq.stopped`` log)."""
    stopped = daemon.seen("homeiq.stopped")
    assert stopped is not None, daemon.events[-10:]
    received = stopped["events"]
    assert 0 < received < len(messages), "the stop should come in the middle of the replay"
    return write_recording(tmp_path / "received.jsonl", messages[:received])


def test_sigterm_flushes_the_in_memory_batch_to_influxdb(
    tmp_path: Path, influxd_server: InfluxServer, influx_db: str
) -> None:
    messages = generate_events(EVENTS, rate_per_s=RATE_PER_S, seed=5)
    recording = write_recording(tmp_path / "events.jsonl", messages)
    values = outage_settings(tmp_path / "state", influxd_server.url, influx_db, batch=HOLD_IN_MEMORY)
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", "1"], settings_env(values))
    try:
        daemon.wait_for("replay.started", 30)
        time.sleep(1.5)
        assert influxd_server.query("SHOW MEASUREMENTS", influx_db) == [], "nothing is sent before the stop"
        rc, stop_s = sigterm_and_wait(daemon, values["shutdown_timeout_s"])
    finally:
        daemon.kill()
    assert rc == 0, daemon.events[-10:]
    assert stop_s < values["shutdown_timeout_s"], (stop_s, daemon.events[-10:])
    expected = expected_points(received_before_stop(daemon, messages, tmp_path))
    assert len(expected) > 500
    diff = compare(expected, stored_points(influxd_server, influx_db))
    assert diff.ok, diff.summary()
    # Healthy InfluxDB: the spool directory holds no segment (nothing was written to the SD card for it).
    assert list((tmp_path / "state" / "spool").glob("*.seg")) == []


async def test_sigterm_with_hung_influxdb_spools_within_the_deadline(
    tmp_path: Path, influxd_private: InfluxServer
) -> None:
    server = influxd_private
    messages = generate_events(EVENTS, rate_per_s=RATE_PER_S, seed=6)
    recording = write_recording(tmp_path / "events.jsonl", messages)
    db = "hung"
    server.create_database(db)
    state = tmp_path / "state"
    # A long write timeout with retries: a hung server would hold the stop for 3 x 10 s without the bound.
    values = outage_settings(
        state, server.url, db, batch=HOLD_IN_MEMORY, shutdown_timeout_s=4.0,
        influxdb={"timeout_s": 10.0, "write_attempts": 3},
    )
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", "1"], settings_env(values))
    try:
        daemon.wait_for("replay.started", 30)
        time.sleep(1.5)
        server.pause()
        rc, stop_s = sigterm_and_wait(daemon, values["shutdown_timeout_s"])
    finally:
        daemon.kill()
        server.resume()
    assert rc == 0, daemon.events[-10:]
    assert stop_s < values["shutdown_timeout_s"] + 1.0, (stop_s, daemon.events[-10:])
    expected = expected_points(received_before_stop(daemon, messages, tmp_path))
    stopped = daemon.seen("delivery.stopped")
    assert stopped is not None
    assert stopped["spooled_points"] == len(expected)
    assert daemon.seen("delivery.lost_at_stop") is None
    # (The resumed influxd may still apply the cancelled write: the replay below then rewrites the same points.)

    # The next start sends what the stop spooled.
    spool = Spool(state / "spool", max_bytes=64 << 20, segment_bytes=8 << 20)
    assert spool.stats().points == len(expected)
    spool.close()
    app = App(Settings(**outage_settings(state, server.url, db)))
    task = asyncio.create_task(app.run())
    try:
        await wait_until(lambda: caught_up(app, 0), 30, "the spool to drain")
    finally:
        await stop_app(app, task)
    diff = compare(expected, stored_points(server, db))
    assert diff.ok, diff.summary()
