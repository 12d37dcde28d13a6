"""The periodic-work scheduler: a failing, slow or hung tick never stops the schedule."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import pytest
from structlog.testing import capture_logs

from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.stats import Stats


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_an_exception_is_logged_with_traceback_counted_and_the_job_goes_on() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError(f"retention failed #{calls}")

    scheduler = Scheduler(Stats())
    job = scheduler.every("retention", 0.05, flaky, run_at_start=True)
    with capture_logs() as logs:
        await run_for(scheduler, 0.33)
    assert calls >= 6
    assert job.failures == (calls + 1) // 2
    assert scheduler.failures["retention"] == job.failures
    assert job.last_error is not None
    assert job.last_error.startswith("RuntimeError: retention failed #")
    failed = [e for e in logs if e["event"] == "scheduler.tick_failed"]
    assert len(failed) == job.failures
    assert failed[0]["exc_info"] is True  # the traceback is rendered by the configured chain
    assert failed[0]["job"] == "retention"


async def test_a_slow_tick_warns_and_feeds_the_durations() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.08)

    stats = Stats()
    scheduler = Scheduler(stats, slow_tick_s=0.05)
    job = scheduler.every("metadata_refresh", 10.0, slow)
    with capture_logs() as logs:
        assert await scheduler.run_tick_safe(job) is True
    (warning,) = [e for e in logs if e["event"] == "scheduler.tick_slow"]
    assert warning["log_level"] == "warning"
    assert warning["job"] == "metadata_refresh"
    assert warning["seconds"] >= 0.08
    assert stats.ticks.count == 1
    assert stats.ticks.last_s is not None
    assert stats.ticks.last_s >= 0.08
    described = scheduler.describe()["metadata_refresh"]
    assert described["runs"] == 1
    assert described["failures"] == 0
    assert isinstance(described["last_ms"], float)
    assert described["last_ms"] >= 80


async def test_a_hung_tick_is_cancelled_at_its_timeout_and_the_next_one_runs() -> None:
    started = 0

    async def hangs_once() -> None:
        nonlocal started
        started += 1
        if started == 1:
            await asyncio.Event().wait()

    scheduler = Scheduler(Stats())
    job = scheduler.every("delivery_log_cleanup", 0.05, hangs_once, run_at_start=True, timeout_s=0.1)
    with capture_logs() as logs:
        await run_for(scheduler, 0.4)
    assert started >= 3
    assert job.failures == 1
    assert job.last_error == "timed out after 0.1 s"
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["scheduler.tick_timeout"]


async def test_the_jobs_own_timeout_is_an_ordinary_failure() -> None:
    async def times_out() -> None:
        raise TimeoutError("HA did not answer")

    scheduler = Scheduler(Stats())
    job = scheduler.every("metadata_refresh", 60.0, times_out)
    with capture_logs() as logs:
        assert await scheduler.run_tick_safe(job) is False
    assert job.last_error == "TimeoutError: HA did not answer"
    assert [e["event"] for e in logs] == ["scheduler.tick_failed"]


async def test_missed_runs_are_skipped_not_burst() -> None:
    ticks: list[float] = []

    async def record() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            time.sleep(0.35)  # the loop stalls (a slow SD card, a suspended VM): about 7 runs are missed

    scheduler = Scheduler(Stats(), slow_tick_s=10)
    scheduler.every("status", 0.05, record, run_at_start=True)
    await run_for(scheduler, 0.6)
    after_stall = [b - a for a, b in itertools.pairwise(ticks[1:])]
    assert after_stall[0] >= 0.35
    assert min(after_stall[1:]) >= 0.04  # back to the interval, no catch-up burst


async def test_the_first_run_waits_an_interval_unless_asked() -> None:
    ran: list[str] = []

    async def mark_a() -> None:
        ran.append("at_start")

    async def mark_b() -> None:
        ran.append("later")

    scheduler = Scheduler(Stats())
    scheduler.every("a", 0.5, mark_a, run_at_start=True)
    scheduler.every("b", 0.5, mark_b)
    await run_for(scheduler, 0.1)
    assert ran == ["at_start"]


def test_bad_registrations_are_refused() -> None:
    async def nothing() -> None:
        return None

    scheduler = Scheduler(Stats())
    scheduler.every("x", 1.0, nothing)
    with pytest.raises(ValueError, match="exists"):
        scheduler.every("x", 1.0, nothing)
    with pytest.raises(ValueError, match="positive"):
        scheduler.every("y", 0, nothing)


def test_default_timeouts_leave_room_for_slow_honest_work() -> None:
    async def nothing() -> None:
        return None

    scheduler = Scheduler(Stats())
    assert scheduler.every("flush", 5.0, nothing).timeout_s == 300.0
    assert scheduler.every("retention", 3600.0, nothing).timeout_s == 3600.0
    assert scheduler.every("custom", 5.0, nothing, timeout_s=2.0).timeout_s == 2.0
