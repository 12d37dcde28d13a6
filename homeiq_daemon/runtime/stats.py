"""Counters and gauges of the running daemon, as plain attributes.

The hot path increments ints (a Prometheus counter costs a lock per call); the HTTP server exposes these
through a Prometheus collector at scrape time, /healthz reads them, and the log lines report them.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from homeiq_daemon.runtime.progress import ProgressBoard


@dataclass(slots=True)
class DurationWindow:
    """Recent durations (seconds) for averages in /healthz; bounded."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    last_s: float | None = None
    count: int = 0
    total_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.last_s = seconds
        self.count += 1
        self.total_s += seconds

    @property
    def average_s(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


# Upper bounds of the /metrics histograms (the last bucket, +Inf, is implicit).
FLUSH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TICK_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)
BATCH_POINTS_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000)


@dataclass(slots=True)
class Histogram:
    """Cumulative-ready bucket counts for a Prometheus histogram: one bisect and two adds per observation."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket; the last one is above every bound
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class Stats:
    started_at: float = field(default_factory=time.time)
    events_received: Counter[str] = field(default_factory=Counter)  # by source
    events_skipped: Counter[str] = field(default_factory=Counter)  # by reason (duplicate, filtered, …)
    malformed_messages: Counter[str] = field(default_factory=Counter)  # by source
    last_event_at: float | None = None
    points_written: int = 0
    points_dropped: Counter[str] = field(default_factory=Counter)  # by reason
    batches_written: int = 0
    batch_points: deque[int] = field(default_factory=lambda: deque(maxlen=256))
    batch_points_histogram: Histogram = field(default_factory=lambda: Histogram(BATCH_POINTS_BUCKETS))
    flush: DurationWindow = field(default_factory=DurationWindow)
    flush_histogram: Histogram = field(default_factory=lambda: Histogram(FLUSH_BUCKETS_S))
    sink_errors: Counter[str] = field(default_factory=Counter)  # by HTTP status or error class
    _sink_state: str = "starting"  # up | down | starting | embedded
    sink_state_since: float = field(default_factory=time.time)  # wall time sink_state last changed
    sink_down_since: float | None = None
    _hub_connected: bool = False
    hub_connected_since: float | None = None  # wall time the current hub connection came up
    hub_state: str = "disconnected"
    hub_down_since: float | None = None  # wall time the hub connection was lost (None: up, or never up)
    reconnects: int = 0
    spool_bytes: int = 0
    spool_records: int = 0
    spool_points: int = 0
    spool_oldest_ms: int | None = None
    spool_drained_points: int = 0
    spool_damaged_bytes: int = 0
    spool_damaged_regions: int = 0  # damaged stretches found in the spool (each logged as spool.damaged)
    dead_letter_points: int = 0
    dead_letter_recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=10))  # (time, why)
    ticks: DurationWindow = field(default_factory=DurationWindow)
    tick_histogram: Histogram = field(default_factory=lambda: Histogram(TICK_BUCKETS_S))
    # Backfill from Home Assistant's recorder (sources/homeassistant/backfill.py).
    backfill_points: int = 0
    backfill_running: bool = False
    backfill_runs: int = 0
    backfill_last_start_ns: int | None = None  # the window of the last completed run (HA time, ns)
    backfill_last_end_ns: int | None = None
    backfill_last_duration_s: float | None = None
    backfill_unavailable: str | None = None  # why the recorder cannot be asked at all (None: it can)
    backfill_unhealed: dict[str, str] = field(default_factory=dict)  # entity_id -> why its gap stays
    progress: ProgressBoard = field(default_factory=ProgressBoard)  # long work: replay, drain, backfill, import

    # Properties, so every place that flips a state also stamps when: the status page shows "since when".
    @property
    def hub_connected(self) -> bool:
        return self._hub_connected

    @hub_connected.setter
    def hub_connected(self, value: bool) -> None:
        if value and not self._hub_connected:
            self.hub_connected_since = time.time()
        elif not value:
            self.hub_connected_since = None
        self._hub_connected = value

    @property
    def sink_state(self) -> str:
        return self._sink_state

    @sink_state.setter
    def sink_state(self, value: str) -> None:
        if value != self._sink_state:
            self.sink_state_since = time.time()
        self._sink_state = value

    def record_dead_letter(self, reason: str, points: int = 1) -> None:
        self.dead_letter_points += points
        self.dead_letter_recent.append((time.time(), reason[:300]))

    def record_flush(self, seconds: float) -> None:
        self.flush.add(seconds)
        self.flush_histogram.observe(seconds)

    def record_batch(self, points: int) -> None:
        self.batch_points.append(points)
        self.batch_points_histogram.observe(points)

    def record_tick(self, seconds: float) -> None:
        self.ticks.add(seconds)
        self.tick_histogram.observe(seconds)


@dataclass(slots=True)
class QueryTimes:
    """Durations of the store's reads, by query name, as cumulative histogram buckets (for /metrics)."""

    bounds_s: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
    counts: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        buckets = self.counts.get(name)
        if buckets is None:
            buckets = self.counts[name] = [0] * (len(self.bounds_s) + 1)
            self.sums[name] = 0.0
        for index, bound in enumerate(self.bounds_s):
            if seconds <= bound:
                buckets[index] += 1
                break
        else:
            buckets[-1] += 1
        self.sums[name] += seconds
