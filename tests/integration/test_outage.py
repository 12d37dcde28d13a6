"""Never lose an event: InfluxDB killed, hung, and the daemon restarted mid-outage (real influxd).

Events flow from the replay source at a steady pace through the whole outage; afterwards every expected
point must be in InfluxDB with its value (the expectation uses the daemon's own mapping rules).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.spool import Spool
from tests.support.daemon import poll_until
from tests.support.influxd import InfluxServer
from tests.support.oracle import assert_nothing_lost, expected_from_replay
from tests.support.outage import DaemonProcess, caught_up, outage_settings, settings_env, stop_app, wait_until
from tests.support.pointcheck import compare, expected_points, stored_points, write_recording
from tests.support.recording import generate_events

pytestmark = [pytest.mark.influxd, pytest.mark.slow]

RATE_PER_S = 2500.0  # recorded pace; replayed at speed 1, so events keep arriving through the outage
# The outage lasts while this many events arrive (about 12 s at the recorded pace): measured in events, so a
# loaded machine makes it longer, never emptier.
OUTAGE_EVENTS = 30_000


async def run_outage(tmp_path: Path, server: InfluxServer, fault: str) -> None:
    count = 60_000
    recording = write_recording(tmp_path / "events.jsonl", generate_events(count, rate_per_s=RATE_PER_S, seed=31))
    expected = expected_points(recording)
    db = "outage"
    server.create_database(db)
    settings = Settings(**outage_settings(tmp_path / "state", server.url, db, replay={"path": recording, "speed": 1.0}))
    app = App(settings)
    task = asyncio.create_task(app.run())
    try:
        await wait_until(lambda: app.stats.points_written > 2000, 15, "the first points to be written")
        if fault == "kill":
            server.kill()
        else:
            server.pause()
        at_fault = sum(app.stats.events_received.values())
        await wait_until(
            lambda: sum(app.stats.events_received.values()) >= at_fault + OUTAGE_EVENTS and app.stats.spool_points > 0,
            120, f"{OUTAGE_EVENTS} events to arrive during the outage and reach the spool",
        )
        received_in_outage = sum(app.stats.events_received.values())
        assert app.stats.sink_state == "down"
        assert app.stats.spool_points > 0, "the outage should have sent batches to the spool"
        assert app.delivery is not None
        assert app.delivery.backlog <= 2 * settings.batch.max_pending_batches  # memory did not take the outage
        if fault == "kill":
            await asyncio.to_thread(server.start)
        else:
            server.resume()
        await wait_until(lambda: caught_up(app, count), 90, "the spool to drain and the replay to finish")
        assert received_in_outage < count, "events must keep arriving after the outage too"
    finally:
        await stop_app(app, task)
    assert app.stats.spool_drained_points > 0
    assert sum(app.stats.points_dropped.values()) == 0, app.stats.points_dropped
    assert list((tmp_path / "state" / "spool").glob("*.seg")) == []

    # The independent oracle (the input read with a plain JSON reader, HA's schema, every field) ...
    assert assert_nothing_lost(expected_from_replay(recording), server, db).expected > 45_000
    # ... and the daemon's own rules, which give the per-entity counts when something is off.
    diff = compare(expected, stored_points(server, db))
    assert diff.ok, diff.summary()
    assert diff.per_entity_expected == diff.per_entity_stored


async def test_influxd_killed_for_20_s_nothing_missing(tmp_path: Path, influxd_private: InfluxServer) -> None:
    await run_outage(tmp_path, influxd_private, "kill")


async def test_influxd_hung_for_20_s_nothing_missing(tmp_path: Path, influxd_private: InfluxServer) -> None:
    await run_outage(tmp_path, influxd_private, "pause")


async def test_daemon_restarted_mid_outage_nothing_missing(tmp_path: Path, influxd_private: InfluxServer) -> None:
    """``homeiq run`` gets SIGTERM while InfluxDB is down: it spools what it holds and exits 0; the next run
    (fed only the later events) sends the spooled ones too once InfluxDB is back."""
    server = influxd_private
    messages = generate_events(24_000, rate_per_s=RATE_PER_S, seed=47)
    first = write_recording(tmp_path / "first.jsonl", messages[:12_000])
    second = write_recording(tmp_path / "second.jsonl", messages[12_000:])
    expected = expected_points(first, second)
    db = "restart"
    server.create_database(db)
    state = tmp_path / "state"
    values = outage_settings(state, server.url, db)

    daemon = DaemonProcess(["--replay", str(first), "--replay-speed", "1", "--keep-running"], settings_env(values))
    try:
        daemon.wait_for("homeiq.starting", 20)
        # Kill InfluxDB once some points are in (the first run both writes and spools).
        poll_until(lambda: server.rows('SELECT count("value") FROM /.*/', db), "the first points in InfluxDB")
        server.kill()
        daemon.wait_for("sink.down", 30)
        daemon.wait_for("replay.finished", 60)
        daemon.stop(values["shutdown_timeout_s"])  # exit 0 within the documented deadline, or the test fails
    finally:
        daemon.kill()
    assert daemon.seen("delivery.lost_at_stop") is None
    spool = Spool(state / "spool", max_bytes=64 << 20, segment_bytes=8 << 20)
    spooled = spool.stats().points
    spool.close()
    assert spooled > 0

    settings = Settings(**outage_settings(state, server.url, db, replay={"path": second, "speed": 1.0}))
    app = App(settings)
    task = asyncio.create_task(app.run())
    try:
        # Still down: the second run spools too before InfluxDB comes back.
        await wait_until(lambda: app.stats.spool_points > spooled, 60, "the second run to spool")
        await asyncio.to_thread(server.start)
        await wait_until(lambda: caught_up(app, len(messages) - 12_000), 60, "the spool to drain")
    finally:
        await stop_app(app, task)
    assert app.stats.spool_drained_points >= spooled
    assert_nothing_lost(expected_from_replay(first, second), server, db)
    diff = compare(expected, stored_points(server, db))
    assert diff.ok, diff.summary()

