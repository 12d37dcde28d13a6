"""What the daemon did lately, for the status page: events and points per minute over the last hour, the
current rates, and the busiest entities. Bounded: one ring of ``minutes`` buckets, a few rate samples,
at most ``max_entities`` entity counters.

``sample()`` reads the cumulative counters of ``Stats`` (the hot path only increments ints): the app calls
it every few seconds and the status endpoint calls it before answering. Counts since the previous sample
go to the minute that sample falls in, so a bucket is exact to within one sampling interval.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from homeiq_daemon.runtime.stats import Stats

MINUTE_S = 60


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    start: int  # epoch seconds, a multiple of 60
    events: int
    points: int


class Activity:
    def __init__(
        self,
        stats: Stats,
        *,
        minutes: int = 60,
        rate_window_s: float = 60.0,
        max_entities: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._ring: deque[MinuteBucket] = deque(maxlen=minutes)
        self._rate_window_s = rate_window_s
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=256)
        self._entity_events: Counter[str] = Counter()
        self._max_entities = max_entities
        self.entities_not_counted = 0  # events of entities beyond max_entities
        now = clock()
        events, points = self._totals()
        self._minute = int(now // MINUTE_S) * MINUTE_S
        self._minute_events = events
        self._minute_points = points
        self._samples.append((now, events, points))

    # --- feeding ----------------------------------------------------------------------------------

    def count_entity(self, entity_id: str) -> None:
        counts = self._entity_events
        if entity_id in counts or len(counts) < self._max_entities:
            counts[entity_id] += 1
        else:
            self.entities_not_counted += 1

    def sample(self) -> None:
        now = self._clock()
        events, points = self._totals()
        minute = int(now // MINUTE_S) * MINUTE_S
        if minute > self._minute:
            self._ring.append(
                MinuteBucket(self._minute, events - self._minute_events, points - self._minute_points)
            )
            # Minutes with no sample at all (a suspended machine) are empty, not missing.
            gap_start = self._minute + MINUTE_S
            for empty in range(max(gap_start, minute - MINUTE_S * (self._ring.maxlen or 0)), minute, MINUTE_S):
                self._ring.append(MinuteBucket(empty, 0, 0))
            self._minute = minute
            self._minute_events = events
            self._minute_points = points
        self._samples.append((now, events, points))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._rate_window_s:
            self._samples.popleft()

    async def tick(self) -> None:
        """The scheduler's job."""
        self.sample()

    # --- reading ----------------------------------------------------------------------------------

    def minutes(self) -> list[MinuteBucket]:
        """The finished minutes of the last hour, oldest first, then the current (partial) one."""
        events, points = self._totals()
        current = MinuteBucket(self._minute, events - self._minute_events, points - self._minute_points)
        return [*self._ring, current]

    def rates(self) -> tuple[float, float]:
        """(events/s, points written/s) over the last ``rate_window_s``."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        t0, e0, p0 = self._samples[0]
        t1, e1, p1 = self._samples[-1]
        span = t1 - t0
        if span <= 0:
            return 0.0, 0.0
        return (e1 - e0) / span, (p1 - p0) / span

    def busiest(self, count: int = 10) -> list[tuple[str, int]]:
        return self._entity_events.most_common(count)

    def _totals(self) -> tuple[int, int]:
        st = self._stats
        return sum(st.events_received.values()), st.points_written
