"""A small scheduler for periodic work (retention, status, metadata refresh).

Every tick is wrapped: an exception is logged with its traceback and counted, and the next tick runs as
planned; a tick slower than ``slow_tick_s`` logs a warning; a tick still running after its ``timeout_s``
(by default its interval, and at least ``MIN_TIMEOUT_S``) is cancelled and counted as a failure, so one
hung call cannot silently stop a job for good. Tick durations feed /healthz (``Stats.ticks`` and
``Scheduler.describe``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import DurationWindow, Stats

log = get_logger("homeiq.scheduler")

# A default timeout below this would cancel honest work on a slow SD card (a 5 s flush job that once takes
# 20 s is slow, not hung); cancelling is for ticks that will never finish.
MIN_TIMEOUT_S = 300.0

TickFn = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class Job:
    name: str
    interval_s: float
    fn: TickFn
    run_at_start: bool = False
    timeout_s: float | None = None
    durations: DurationWindow = field(default_factory=DurationWindow)
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_run_at: float | None = None  # wall clock, for people


class Scheduler:
    def __init__(self, stats: Stats, *, slow_tick_s: float = 0.5) -> None:
        self._stats = stats
        self.slow_tick_s = slow_tick_s
        self.jobs: list[Job] = []
        self.failures: Counter[str] = Counter()

    def every(
        self, name: str, interval_s: float, fn: TickFn, *, run_at_start: bool = False, timeout_s: float | None = None
    ) -> Job:
        if interval_s <= 0:
            raise ValueError(f"job {name}: interval_s must be positive")
        if any(job.name == name for job in self.jobs):
            raise ValueError(f"job {name}: a job of that name exists")
        job = Job(name, interval_s, fn, run_at_start, timeout_s=timeout_s or max(interval_s, MIN_TIMEOUT_S))
        self.jobs.append(job)
        return job

    async def run_tick_safe(self, job: Job) -> bool:
        # All timing on the event loop's clock: the same monotonic time in production, and a clock tests can
        # drive (a virtual-time loop) to check schedules exactly without waiting.
        clock = asyncio.get_running_loop().time
        started = clock()
        job.last_run_at = time.time()
        job.runs += 1
        ok = True
        deadline = asyncio.timeout(job.timeout_s)
        try:
            async with deadline:
                await job.fn()
        except Exception as exc:  # CancelledError (a BaseException) passes: stopping is not a failure
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # An error raised while being cancelled (a failed clean-up replacing the CancelledError) is
                # the stop, not a failed tick: looping on would keep the shutdown waiting forever.
                raise asyncio.CancelledError from exc
            ok = False
            job.failures += 1
            self.failures[job.name] += 1
            if isinstance(exc, TimeoutError) and deadline.expired():
                job.last_error = f"timed out after {job.timeout_s:g} s"
                log.error("scheduler.tick_timeout", job=job.name, timeout_s=job.timeout_s, failures=job.failures)
            else:
                job.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("scheduler.tick_failed", job=job.name, failures=job.failures)
        elapsed = clock() - started
        job.durations.add(elapsed)
        self._stats.record_tick(elapsed)
        if elapsed > self.slow_tick_s:
            log.warning("scheduler.tick_slow", job=job.name, seconds=round(elapsed, 3))
        return ok

    async def _loop(self, job: Job) -> None:
        clock = asyncio.get_running_loop().time
        if not job.run_at_start:
            await asyncio.sleep(job.interval_s)
        next_at = clock()
        while True:
            await self.run_tick_safe(job)
            next_at += job.interval_s
            # After a long stall (suspend, a slow tick) skip the missed runs instead of bursting.
            now = clock()
            if next_at < now:
                next_at = now + job.interval_s
            await asyncio.sleep(next_at - now)

    def describe(self) -> dict[str, dict[str, object]]:
        """Per job, for /healthz: runs, failures, the last error, durations in milliseconds."""
        return {
            job.name: {
                "interval_s": job.interval_s,
                "runs": job.runs,
                "failures": job.failures,
                "last_error": job.last_error,
                "last_run_at": job.last_run_at,
                "last_ms": None if job.durations.last_s is None else round(job.durations.last_s * 1000, 1),
                "average_ms": None if job.durations.average_s is None else round(job.durations.average_s * 1000, 1),
            }
            for job in self.jobs
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._loop(job), name=f"homeiq-tick-{job.name}")
