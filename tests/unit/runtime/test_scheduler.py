"""The periodic-work scheduler: a failing, slow or hung tick never stops the schedule.

Run on a virtual clock (tests/support/virtual_time.py): the schedule's times are exact and nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from structlog.testing import capture_logs

from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.stats import Stats
from tests.support.virtual_time import run_virtual, virtual_loop


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_an_exception_is_logged_with_traceback_counted_and_the_job_goes_on() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError(f"retention failed #{calls}")

    async def main() -> None:
        scheduler = Scheduler(Stats())
        job = scheduler.every("retention", 0.05, flaky, run_at_start=True)
        with capture_logs() as logs:
            await run_for(scheduler, 0.33)
        assert calls == 7  # at 0, 0.05, ..., 0.30
        assert job.failures == 4
        assert scheduler.failures["retention"] == 4
        assert job.last_error == "RuntimeError: retention failed #7"
        failed = [e for e in logs if e["event"] == "scheduler.tick_failed"]
        assert len(failed) == 4
        assert failed[0]["exc_info"] is True  # the traceback is rendered by the configured chain
        assert failed[0]["job"] == "retention"

    run_virtual(main())


def test_a_slow_tick_warns_and_feeds_the_durations() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.08)

    async def main() -> None:
        stats = Stats()
        scheduler = Scheduler(stats, slow_tick_s=0.05)
        job = scheduler.every("metadata_refresh", 10.0, slow)
        with capture_logs() as logs:
            assert await scheduler.run_tick_safe(job) is True
        (warning,) = [e for e in logs if e["event"] == "scheduler.tick_slow"]
        assert warning["log_level"] == "warning"
        assert warning["job"] == "metadata_refresh"
        assert warning["seconds"] == 0.08
        assert stats.ticks.count == 1
        assert stats.ticks.last_s == pytest.approx(0.08)
        described = scheduler.describe()["metadata_refresh"]
        assert described["runs"] == 1
        assert described["failures"] == 0
        assert described["last_ms"] == 80.0

    run_virtual(main())


def test_a_fast_tick_does_not_warn() -> None:
    async def quick() -> None:
        await asyncio.sleep(0.04)

    async def main() -> None:
        scheduler = Scheduler(Stats(), slow_tick_s=0.05)
        job = scheduler.every("status", 10.0, quick)
        with capture_logs() as logs:
            assert await scheduler.run_tick_safe(job) is True
        assert [e for e in logs if e["event"] == "scheduler.tick_slow"] == []

    run_virtual(main())


def test_a_hung_tick_is_cancelled_at_its_timeout_and_the_next_one_runs() -> None:
    starts: list[float] = []

    async def hangs_once() -> None:
        starts.append(virtual_loop().time())
        if len(starts) == 1:
            await asyncio.Event().wait()

    async def main() -> None:
        scheduler = Scheduler(Stats())
        job = scheduler.every("delivery_log_cleanup", 0.05, hangs_once, run_at_start=True, timeout_s=0.1)
        with capture_logs() as logs:
            await run_for(scheduler, 0.4)
        # Cancelled at 0.1 s; the planned runs it overran are skipped and the schedule goes on from there.
        assert starts[:3] == pytest.approx([0.0, 0.15, 0.2])
        assert job.failures == 1
        assert job.last_error == "timed out after 0.1 s"
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["scheduler.tick_timeout"]

    run_virtual(main())


def test_the_jobs_own_timeout_is_an_ordinary_failure() -> None:
    async def times_out() -> None:
        raise TimeoutError("HA did not answer")

    async def main() -> None:
        scheduler = Scheduler(Stats())
        job = scheduler.every("metadata_refresh", 60.0, times_out)
        with capture_logs() as logs:
            assert await scheduler.run_tick_safe(job) is False
        assert job.last_error == "TimeoutError: HA did not answer"
        assert [e["event"] for e in logs] == ["scheduler.tick_failed"]

    run_virtual(main())


def test_missed_runs_are_skipped_not_burst() -> None:
    ticks: list[float] = []

    async def record() -> None:
        ticks.append(virtual_loop().time())
        if len(ticks) == 2:
            virtual_loop().advance(0.35)  # the loop stalls (a slow SD card, a suspended VM): 7 runs are missed

    async def main() -> None:
        scheduler = Scheduler(Stats(), slow_tick_s=10)
        scheduler.every("status", 0.05, record, run_at_start=True)
        await run_for(scheduler, 0.6)

    run_virtual(main())
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(ticks)]
    assert gaps[0] == 0.05
    assert gaps[1] == 0.4  # the stall, then one interval: no run at the missed times
    assert set(gaps[2:]) == {0.05}  # back to the interval, no catch-up burst


def test_the_first_run_waits_an_interval_unless_asked() -> None:
    ran: list[tuple[str, float]] = []

    async def mark_a() -> None:
        ran.append(("at_start", virtual_loop().time()))

    async def mark_b() -> None:
        ran.append(("later", virtual_loop().time()))

    async def main() -> None:
        scheduler = Scheduler(Stats())
        scheduler.every("a", 0.5, mark_a, run_at_start=True)
        scheduler.every("b", 0.5, mark_b)
        await run_for(scheduler, 0.6)

    run_virtual(main())
    assert ran == [("at_start", 0.0), ("at_start", 0.5), ("later", 0.5)]


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
