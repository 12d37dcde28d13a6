"""SIGTERM: ``homeiq run`` flushes its in-memory batch to InfluxDB, or to the spool when InfluxDB hangs, within
``shutdown_timeout_s``, and exits 0 (real influxd, real subprocess, real signal)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.spool import Spool
from tests.support.daemon import DEFAULT_CEILING_S, poll_until
from tests.support.influxd import InfluxServer, free_port
from tests.support.oracle import assert_nothing_lost, expected_from_replay
from tests.support.outage import DaemonProcess, caught_up, outage_settings, settings_env, stop_app, wait_until
from tests.support.pointcheck import write_recording
from tests.support.recording import generate_events

pytestmark = [pytest.mark.influxd]

# The batch is never flushed by size or time while the replay runs: only the stop can send it. The recording
# lasts 60 s at its recorded pace and the stop comes once 500 events were taken, so it always comes in the
# middle of it (the replay flushes at its end), however loaded the machine.
HOLD_IN_MEMORY = {"size": 100_000, "flush_interval_s": 3600.0, "max_pending_batches": 4}
EVENTS, RATE_PER_S = 12_000, 200.0
TAKEN_BEFORE_STOP = 500


def events_received(port: int) -> float:
    """``homeiq_events_received_total`` from the daemon's own /metrics (0 while it is not serving yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("homeiq_events_received_total"))


def wait_for_events(daemon: DaemonProcess, port: int, count: int) -> None:
    daemon.wait_for("replay.started", DEFAULT_CEILING_S)

    def taken() -> bool:
        assert daemon.proc.poll() is None, daemon.events[-10:]
        return events_received(port) >= count

    poll_until(taken, f"{count} events taken", DEFAULT_CEILING_S * 2, detail=lambda: daemon.events[-10:])


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
    port = free_port()
    values = outage_settings(tmp_path / "state", influxd_server.url, influx_db, batch=HOLD_IN_MEMORY,
                             http={"enabled": True, "port": port})
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", "1"], settings_env(values))
    try:
        wait_for_events(daemon, port, TAKEN_BEFORE_STOP)
        assert influxd_server.query("SHOW MEASUREMENTS", influx_db) == [], "nothing is sent before the stop"
        daemon.stop(values["shutdown_timeout_s"])  # exit 0 within the documented deadline, or the test fails
    finally:
        daemon.kill()
    expected = expected_from_replay(received_before_stop(daemon, messages, tmp_path))
    assert len(expected) > 400
    assert_nothing_lost(expected, influxd_server, influx_db)
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
    port = free_port()
    values = outage_settings(
        state, server.url, db, batch=HOLD_IN_MEMORY, shutdown_timeout_s=4.0,
        influxdb={"timeout_s": 10.0, "write_attempts": 3}, http={"enabled": True, "port": port},
    )
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", "1"], settings_env(values))
    try:
        wait_for_events(daemon, port, TAKEN_BEFORE_STOP)
        server.pause()
        # Unbounded, a hung server would hold the stop for 3 x 10 s: past the deadline the helper enforces.
        daemon.stop(values["shutdown_timeout_s"])
    finally:
        daemon.kill()
        server.resume()
    expected = expected_from_replay(received_before_stop(daemon, messages, tmp_path))
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
    assert_nothing_lost(expected, server, db)
