"""Is the pipeline alive? The answer gates the systemd watchdog ping (and /healthz can show it).

Healthy means: the delivery tasks are still running (none crashed, finished or was cancelled), and no write
to the sink is wedged. A write is wedged when it has been in flight for longer than ``stall_s`` with no
sign of life from the sink in between (no request completed or failed). Every sink call has its own
timeout, so a live writer always shows such signs: a sink that is merely down fails fast, is counted, and
its batches go to the spool; that state is healthy. What is left when the signs stop is a bug or a hang,
and there a restart by the watchdog is the cure.

A backlog that does not shrink is deliberately not a reason: when the disk is full the delivery keeps
batches in memory until it recovers, and a restart would lose them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import BatchWriter, WriteResult

# influx.py honours a Retry-After of up to this long between two attempts; a write may legitimately sleep
# that long with no activity. (Kept equal to influx._MAX_RETRY_AFTER_S; a unit test checks it.)
LONGEST_SINK_WAIT_S = 300.0
MIN_STALL_S = 120.0


def stall_limit_s(sink_timeout_s: float) -> float:
    """How long a write may show no sign of life before it counts as wedged: twice the longest legitimate
    quiet stretch (one Retry-After wait plus one request), and never under two minutes."""
    return max(MIN_STALL_S, 2 * (LONGEST_SINK_WAIT_S + sink_timeout_s))


class Liveness:
    def __init__(self, stats: Stats, *, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self.stall_s = stall_s
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._calls: dict[int, float] = {}  # in-flight sink calls: token -> start
        self._tokens = itertools.count()
        self._finished_calls = 0
        self._signature: tuple[int, ...] = ()
        self._last_activity: float | None = None

    # --- what is watched ----------------------------------------------------------------------------

    def watch_task(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks[task.get_name()] = task
        return task

    def track_writer(self, writer: BatchWriter) -> BatchWriter:
        return TrackedWriter(writer, self)

    def call_started(self) -> int:
        token = next(self._tokens)
        self._calls[token] = self._clock()
        return token

    def call_finished(self, token: int) -> None:
        self._calls.pop(token, None)
        self._finished_calls += 1

    # --- the verdict -----------------------------------------------------------------------------------

    def check(self) -> str | None:
        """None when healthy, else a short reason for the log and ``STATUS=``."""
        for name, task in self._tasks.items():
            if task.done():
                if task.cancelled():
                    return f"task {name} was cancelled"
                exc = task.exception()
                return f"task {name} crashed: {exc!r}"[:200] if exc else f"task {name} ended"
        now = self._clock()
        signature = self._activity()
        changed = signature != self._signature
        self._signature = signature
        if not self._calls:
            self._last_activity = None
            return None
        oldest = min(self._calls.values())
        if changed:
            self._last_activity = now  # something happened since the last check; now is the safe guess
        last = oldest if self._last_activity is None else max(self._last_activity, oldest)
        quiet_s = now - last
        if quiet_s > self.stall_s:
            return f"sink write wedged: in flight {now - oldest:.0f} s, no sink activity for {quiet_s:.0f} s"
        return None

    def _activity(self) -> tuple[int, ...]:
        st = self._stats
        return (self._finished_calls, st.flush.count, sum(st.sink_errors.values()), st.dead_letter_points)

    def describe(self) -> dict[str, Any]:
        now = self._clock()
        oldest = min(self._calls.values(), default=None)
        return {
            "tasks": {name: not task.done() for name, task in self._tasks.items()},
            "write_in_flight_s": None if oldest is None else round(now - oldest, 3),
            "stall_limit_s": self.stall_s,
        }


class TrackedWriter:
    """A BatchWriter that reports its calls in flight to Liveness; everything else is passed through."""

    def __init__(self, inner: BatchWriter, liveness: Liveness) -> None:
        self.inner = inner
        self._liveness = liveness

    @property
    def describe(self) -> str:
        return self.inner.describe

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ensure_database(self) -> None:
        await self.inner.ensure_database()

    async def ping(self) -> bool:
        token = self._liveness.call_started()
        try:
            return await self.inner.ping()
        finally:
            self._liveness.call_finished(token)

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        token = self._liveness.call_started()
        try:
            return await self.inner.write(body, points, gzipped=gzipped)
        finally:
            self._liveness.call_finished(token)
