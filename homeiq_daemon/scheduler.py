"""A small scheduler for periodic work (retention, status, metadata refresh).

Every tick is wrapped: an exception is logged with its traceback and counted, and the next tick runs as
planned; a tick slower than ``slow_tick_s`` logs a warning. Tick durations feed /healthz.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from homeiq_daemon.logs import get_logger
from homeiq_daemon.stats import DurationWindow, Stats

log = get_logger("homeiq.scheduler")

TickFn = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class Job:
    name: str
    interval_s: float
    fn: TickFn
    run_at_start: bool = False
    durations: DurationWindow = field(default_factory=DurationWindow)
    failures: int = 0
    last_error: str | None = None


class Scheduler:
    def __init__(self, stats: Stats, *, slow_tick_s: float = 0.5) -> None:
        self._stats = stats
        self.slow_tick_s = slow_tick_s
        self.jobs: list[Job] = []
        self.failures: Counter[str] = Counter()

    def every(self, name: str, interval_s: float, fn: TickFn, *, run_at_start: bool = False) -> Job:
        job = Job(name, interval_s, fn, run_at_start)
        self.jobs.append(job)
        return job

    async def run_tick_safe(self, job: Job) -> bool:
        started = time.perf_counter()
        ok = True
        try:
            await job.fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ok = False
            job.failures += 1
            job.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self.failures[job.name] += 1
            log.exception("scheduler.tick_failed", job=job.name, failures=job.failures)
        elapsed = time.perf_counter() - started
        job.durations.add(elapsed)
        self._stats.ticks.add(elapsed)
        if elapsed > self.slow_tick_s:
            log.warning("scheduler.tick_slow", job=job.name, seconds=round(elapsed, 3))
        return ok

    async def _loop(self, job: Job) -> None:
        if not job.run_at_start:
            await asyncio.sleep(job.interval_s)
        next_at = time.monotonic()
        while True:
            await self.run_tick_safe(job)
            next_at += job.interval_s
            # After a long stall (suspend, a slow tick) skip the missed runs instead of bursting.
            now = time.monotonic()
            if next_at < now:
                next_at = now + job.interval_s
            await asyncio.sleep(next_at - now)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._loop(job), name=f"homeiq-tick-{job.name}")
