"""2,000 idle connections against a daemon whose descriptor limit is 1,024 (a common default), while a
recorded event stream flows into a real influxd and /healthz and the API are asked at a steady pace:
every probe is answered, /healthz says ok, nothing is lost between the recording and InfluxDB, and the
log stays quiet (no EMFILE flood). Loopback only, bounded in count and time. The latency figures of the
same scenario are in bench/http_idle.py; this test asserts outcomes only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.idle_load import LoadedDaemon, run_load
from tests.support.influxd import InfluxServer
from tests.support.pointcheck import compare, expected_points, stored_points, write_recording
from tests.support.recording import generate_events

IDLE = 2000
FD_LIMIT = 1024


@pytest.fixture
def daemon(tmp_path: Path, influxd_server: InfluxServer, influx_db: str) -> LoadedDaemon:
    # 2,400 events recorded at 300/s, replayed at that pace: they flow for 8 s, through the load.
    replay = write_recording(tmp_path / "events.jsonl", generate_events(2400, rate_per_s=300.0))
    return LoadedDaemon(tmp_path / "daemon", influxd_server.url, influx_db, replay, replay_speed=1.0,
                        fd_limit=FD_LIMIT)  # fmt: skip


async def test_idle_connections_do_not_starve_health_api_or_pipeline(
    daemon: LoadedDaemon, influxd_server: InfluxServer, influx_db: str
) -> None:
    daemon.start()
    try:
        await daemon.wait_http()
        result = await run_load(daemon, idle=IDLE, healthz_probes=120, api_probes=40)
        unanswered = [p for p in result.healthz + result.api if p.http_status is None]
        assert unanswered == [], (unanswered[:3], daemon.log_tail())
        assert {(p.http_status, p.body_status) for p in result.healthz} == {(200, "ok")}
        assert {p.http_status for p in result.api} == {200}
        assert result.crowd.connects + result.crowd.connect_errors >= IDLE
        assert result.crowd.closed_by_server > IDLE - FD_LIMIT  # the server let go of idle sockets itself

        expected = expected_points(daemon.replay)
        deadline = time.monotonic() + 60
        while True:
            diff = compare(expected, await asyncio.to_thread(stored_points, influxd_server, influx_db))
            if diff.ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert diff.ok, diff.summary()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log_tail()
    log = daemon.log_path.read_text(errors="replace")
    assert "Too many open files" not in log
    assert log.count("\n") < 200, daemon.log_tail(40)  # start, a few stats lines, stop: no flood
