"""`homeiq run`'s console lines: first points once, a heartbeat every 10 s at a terminal unless quiet, and the
first-points event in the log when not at a terminal (fake clock)."""

from __future__ import annotations

import io
import json

import structlog

from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.heartbeat import Heartbeat
from homeiq_daemon.runtime.logs import configure_logging
from homeiq_daemon.runtime.stats import Stats


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_for(seconds: int, heartbeat: Heartbeat, clock: FakeClock, stats: Stats) -> None:
    for _ in range(seconds):
        clock.now += 1
        stats.events_received["live"] += 3
        heartbeat.check()


def make(terminal: bool, quiet: bool = False) -> tuple[Heartbeat, Stats, FakeClock, io.StringIO]:
    stats = Stats()
    clock = FakeClock()
    out = io.StringIO()
    heartbeat = Heartbeat(stats, Activity(stats, clock=clock), stream=out, terminal=terminal, quiet=quiet,
                          hub_configured=True, sink=lambda: "InfluxDB x", clock=clock)  # fmt: skip
    return heartbeat, stats, clock, out


def test_terminal_gets_first_points_once_then_a_line_every_ten_seconds() -> None:
    heartbeat, stats, clock, out = make(terminal=True)
    run_for(3, heartbeat, clock, stats)
    assert out.getvalue() == ""  # nothing written yet: no first-points line
    stats.points_written = 40
    run_for(1, heartbeat, clock, stats)
    assert out.getvalue() == "homeiq: first points written (40 to InfluxDB x, 4.0 s after start)\n"
    stats.points_written = 90
    stats.hub_connected = True
    run_for(25, heartbeat, clock, stats)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # first points, then beats 10 s and 20 s after the start
    assert lines[1].startswith("homeiq: ")
    assert "90 points written" in lines[1]
    assert "spool 0 points" in lines[1]
    assert "HA connected" in lines[1]
    assert lines[2].startswith("homeiq: 3.0 events/s · ")


def test_quiet_keeps_only_the_first_points_line() -> None:
    heartbeat, stats, clock, out = make(terminal=True, quiet=True)
    stats.points_written = 1
    run_for(60, heartbeat, clock, stats)
    assert out.getvalue().splitlines() == ["homeiq: first points written (1 to InfluxDB x, 1.0 s after start)"]


def test_not_a_terminal_logs_the_first_points_event_and_no_heartbeat() -> None:
    logged = io.StringIO()
    configure_logging("json", "info", stream=logged)
    try:
        heartbeat, stats, clock, out = make(terminal=False)
        stats.points_written = 5
        run_for(40, heartbeat, clock, stats)
    finally:
        structlog.reset_defaults()
    assert out.getvalue() == ""
    records = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert [(r["event"], r["points"], r["sink"]) for r in records] == [("homeiq.first_points_written", 5, "InfluxDB x")]
