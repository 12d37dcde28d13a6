"""What ``homeiq run`` tells a person at a terminal, and the journal, while it runs.

* "first points written" once, as soon as the sink took the first points: on a terminal a plain line,
  otherwise (journald, JSON) an info event ``homeiq.first_points_written``;
* on a terminal, a one-line heartbeat every ``interval_s`` (events/s, points written, spool, connections),
  unless ``quiet``. The journal gets its periodic numbers from ``pipeline.stats`` instead.

``tick`` is a scheduler job (every second); it only reads counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats

log = get_logger("homeiq.heartbeat")


class Heartbeat:
    def __init__(
        self,
        stats: Stats,
        activity: Activity,
        *,
        stream: TextIO,
        terminal: bool,
        quiet: bool = False,
        hub_configured: bool = False,
        sink: Callable[[], str] = lambda: "the sink",
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._activity = activity
        self._stream = stream
        self._terminal = terminal
        self._quiet = quiet
        self._hub_configured = hub_configured
        self._sink = sink
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._next_beat = self._started + interval_s
        self.first_points_at: float | None = None

    async def tick(self) -> None:
        self.check()

    def check(self) -> None:
        now = self._clock()
        st = self._stats
        if self.first_points_at is None and st.points_written > 0:
            self.first_points_at = now
            seconds = round(now - self._started, 1)
            if self._terminal:
                sink = self._sink()
                self._say(f"homeiq: first points written ({st.points_written:,} to {sink}, {seconds} s after start)")
            else:
                log.info("homeiq.first_points_written", points=st.points_written, sink=self._sink(), seconds=seconds)
        if self._terminal and not self._quiet and now >= self._next_beat:
            self._next_beat = now + self._interval_s
            self._say(self.line())

    def line(self) -> str:
        st = self._stats
        self._activity.sample()
        events_per_s, _ = self._activity.rates()
        parts = [
            f"{events_per_s:,.1f} events/s",
            f"{st.points_written:,} points written",
            f"spool {st.spool_points:,} points",
        ]
        if self._hub_configured:
            parts.append(f"HA {'connected' if st.hub_connected else st.hub_state}")
        parts.append(f"sink {st.sink_state}")
        dropped = sum(st.points_dropped.values())
        if dropped:
            parts.append(f"{dropped:,} dropped")
        return "homeiq: " + " · ".join(parts)

    def _say(self, text: str) -> None:
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: keep running, stop talking
            self._terminal = False
