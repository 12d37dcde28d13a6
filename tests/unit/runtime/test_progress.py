"""Progress of long work: moving rate and ETA on a fake clock, terminal redraws, log lines, the board."""

from __future__ import annotations

import io
import json

import structlog

from homeiq_daemon.runtime.logs import configure_logging
from homeiq_daemon.runtime.progress import Progress, ProgressBoard, format_duration, render_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_and_eta_follow_the_work() -> None:
    clock = FakeClock()
    progress = Progress("replay", total=1000, unit="events", stream=io.StringIO(), clock=clock, log_every_s=1e9)
    for _ in range(5):
        clock.now += 1.0
        progress.advance(100)
    snap = progress.snapshot()
    assert snap.done == 500
    assert snap.rate_per_s == 100.0
    assert snap.eta_s == 5.0
    assert snap.fraction == 0.5
    # The sink slows down to 10/s: the moving rate follows, and the ETA grows.
    for _ in range(10):
        clock.now += 1.0
        progress.advance(10)
    slowed = progress.snapshot()
    assert slowed.rate_per_s is not None
    assert slowed.rate_per_s < 15
    assert slowed.eta_s is not None
    assert slowed.eta_s > 25


def test_unknown_total_has_no_eta() -> None:
    clock = FakeClock()
    progress = Progress("drain", unit="points", stream=io.StringIO(), clock=clock)
    clock.now += 2.0
    progress.update(400)
    snap = progress.snapshot()
    assert snap.eta_s is None
    assert snap.fraction is None
    assert "400 points" in render_line(snap)


def test_terminal_line_is_redrawn_in_place_and_ended_once() -> None:
    clock = FakeClock()
    out = Tty()
    progress = Progress("replay", total=300, unit="events", stream=out, clock=clock, redraw_s=0.2)
    for _ in range(3):
        clock.now += 1.0
        progress.advance(100)
    progress.advance(0)  # same instant as the last draw: no redraw
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 4  # three updates + the final line
    assert text.endswith("\n")
    assert text.count("\n") == 1
    final = text.rsplit("\r", 1)[1]
    assert "300/300 events" in final
    assert "100%" in final
    assert "done in 0:03" in final


def test_not_a_terminal_logs_structured_lines() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        clock = FakeClock()
        progress = Progress("import-history", total=100, unit="states", stream=io.StringIO(), clock=clock,
                            log_every_s=10.0)
        for _ in range(25):
            clock.now += 1.0
            progress.advance(4)
        progress.finish()
    finally:
        structlog.reset_defaults()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    periodic = [r for r in records if r["event"] == "progress"]
    assert [r["done"] for r in periodic] == [40, 80]  # every 10 s of the fake clock
    assert periodic[0]["task"] == "import-history"
    assert periodic[0]["eta_s"] == 15.0
    assert periodic[0]["rate_per_s"] == 4.0
    done = [r for r in records if r["event"] == "progress.done"]
    assert len(done) == 1
    assert done[0]["done"] == 100
    assert done[0]["elapsed_s"] == 25.0


def test_board_keeps_active_work_and_bounds_finished() -> None:
    board = ProgressBoard(keep_finished=2)
    clock = FakeClock()
    live = Progress("backfill", total=10, board=board, stream=io.StringIO(), clock=clock)
    for n in range(4):
        Progress(f"job{n}", board=board, stream=io.StringIO(), clock=clock).finish()
    names = [snap.task for snap in board.snapshots()]
    assert names == ["backfill", "job2", "job3"]
    assert [snap.task for snap in board.active()] == ["backfill"]
    assert board.get("backfill") is live
    # A task started again under the same name replaces the old entry.
    Progress("backfill", board=board, stream=io.StringIO(), clock=clock)
    assert [snap.task for snap in board.snapshots()].count("backfill") == 1


def test_updates_after_finish_are_ignored() -> None:
    clock = FakeClock()
    progress = Progress("replay", total=10, stream=io.StringIO(), clock=clock)
    clock.now += 1
    progress.update(10)
    first = progress.finish()
    progress.update(99)
    assert progress.finish() == first
    assert progress.snapshot().done == 10


def test_format_duration() -> None:
    assert format_duration(5) == "0:05"
    assert format_duration(65) == "1:05"
    assert format_duration(3 * 3600 + 61) == "3:01:01"
