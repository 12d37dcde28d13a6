"""Prometheus metrics for /metrics: the daemon's plain counters, turned into metric families at scrape time.

The hot path only increments ints in ``Stats`` (a prometheus-client Counter takes a lock per call); the
collector below reads them when Prometheus scrapes. One ``CollectorRegistry`` per app (never the global
one, so tests and several apps in one process do not collide). Another part adds its own metrics with
``Metrics.register(collector)``: any object with a ``collect()`` that yields metric families.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.process_collector import ProcessCollector

from homeiq_daemon import __version__
from homeiq_daemon.runtime.stats import Histogram, QueryTimes, Stats

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Collector(Protocol):
    def collect(self) -> Iterator[Any]: ...


def _bucket_list(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (last one: above every bound) -> cumulative ``(le, count)`` pairs ending in +Inf."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        out.append((repr(float(bound)), float(running)))
    running += counts[-1]
    out.append(("+Inf", float(running)))
    return out


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], _bucket_list(histogram.bounds, histogram.counts), histogram.total)
    return family


def build_info() -> GaugeMetricFamily:
    """``homeiq_build_info{version, python} 1``: the usual way to expose versions (join on it in queries)."""
    family = GaugeMetricFamily("homeiq_build_info", "The running homeiq's version and Python.",
                               labels=["version", "python"])  # fmt: skip
    family.add_metric([__version__, platform.python_version()], 1)
    return family


class StatsCollector:
    """The process-wide counters in ``Stats``. Components with counters of their own register their own
    collector (the metadata store, the registry sync, webhooks, SwitchBot, the HTTP server)."""

    def __init__(self, stats: Stats, *, spool_max_bytes: int) -> None:
        self._stats = stats
        self._spool_max_bytes = spool_max_bytes

    def collect(self) -> Iterator[Any]:
        st = self._stats
        yield _labelled_counter("homeiq_events_received", "State changes taken from a source.", "source",
                                st.events_received)  # fmt: skip
        yield _labelled_counter("homeiq_events_skipped", "Events not written, by reason.", "reason", st.events_skipped)
        yield _labelled_counter("homeiq_malformed_messages", "Malformed messages skipped, by source.", "source",
                                st.malformed_messages)  # fmt: skip
        yield CounterMetricFamily("homeiq_points_written", "Points the sink accepted.", value=st.points_written)
        yield _labelled_counter("homeiq_points_dropped", "Points dropped, by reason.", "reason", st.points_dropped)
        yield CounterMetricFamily("homeiq_batches_written", "Batches the sink accepted.", value=st.batches_written)
        yield build_info()
        yield histogram_family("homeiq_batch_points", "Points per batch written to the sink.",
                               st.batch_points_histogram)  # fmt: skip
        yield histogram_family("homeiq_flush_duration_seconds", "Time to write one batch to the sink.",
                               st.flush_histogram)  # fmt: skip
        yield _labelled_counter("homeiq_sink_errors", "Sink errors, by HTTP status or error class.", "status",
                                st.sink_errors)  # fmt: skip
        yield GaugeMetricFamily("homeiq_sink_up", "1 when the sink takes writes (InfluxDB up, or embedded).",
                                value=1 if st.sink_state in ("up", "embedded") else 0)  # fmt: skip
        yield GaugeMetricFamily("homeiq_hub_connected", "1 while connected to Home Assistant.",
                                value=1 if st.hub_connected else 0)  # fmt: skip
        yield CounterMetricFamily("homeiq_hub_reconnects", "Reconnections to Home Assistant.", value=st.reconnects)
        now = time.time()
        age = now - st.last_event_at if st.last_event_at is not None else float("nan")
        yield GaugeMetricFamily("homeiq_last_event_age_seconds", "Seconds since the last event.", value=age)
        yield GaugeMetricFamily("homeiq_spool_bytes", "Bytes in the disk spool.", value=st.spool_bytes)
        yield GaugeMetricFamily("homeiq_spool_max_bytes", "Spool size bound.", value=self._spool_max_bytes)
        yield GaugeMetricFamily("homeiq_spool_records", "Batches in the disk spool.", value=st.spool_records)
        yield GaugeMetricFamily("homeiq_spool_points", "Points in the disk spool.", value=st.spool_points)
        oldest = now - st.spool_oldest_ms / 1000 if st.spool_oldest_ms else 0.0
        yield GaugeMetricFamily("homeiq_spool_oldest_age_seconds", "Age of the oldest spooled batch.", value=oldest)
        yield CounterMetricFamily("homeiq_spool_drained_points", "Points replayed from the spool.",
                                  value=st.spool_drained_points)  # fmt: skip
        yield CounterMetricFamily("homeiq_spool_damaged_bytes", "Bytes of damaged spool records skipped.",
                                  value=st.spool_damaged_bytes)  # fmt: skip
        yield CounterMetricFamily("homeiq_spool_damaged_regions", "Damaged stretches found in the spool.",
                                  value=st.spool_damaged_regions)  # fmt: skip
        yield CounterMetricFamily("homeiq_dead_letter_points", "Points the sink rejected for good.",
                                  value=st.dead_letter_points)  # fmt: skip
        yield histogram_family("homeiq_tick_duration_seconds", "Duration of one run of a periodic job.",
                               st.tick_histogram)  # fmt: skip
        yield from self._backfill_metrics(st)

    @staticmethod
    def _backfill_metrics(st: Stats) -> Iterator[Any]:
        yield CounterMetricFamily("homeiq_backfill_points", "Points backfilled from Home Assistant's recorder.",
                                  value=st.backfill_points)  # fmt: skip
        yield CounterMetricFamily("homeiq_backfill_runs", "Completed backfills.", value=st.backfill_runs)
        yield GaugeMetricFamily("homeiq_backfill_running", "1 while a backfill is catching up.",
                                value=1 if st.backfill_running else 0)  # fmt: skip
        nan = float("nan")
        start, end = st.backfill_last_start_ns, st.backfill_last_end_ns
        yield GaugeMetricFamily("homeiq_backfill_last_window_start_timestamp_seconds",
                                "Start of the last backfill's window.",
                                value=start / 1e9 if start is not None else nan)  # fmt: skip
        yield GaugeMetricFamily("homeiq_backfill_last_window_end_timestamp_seconds",
                                "End of the last backfill's window.",
                                value=end / 1e9 if end is not None else nan)  # fmt: skip
        duration = st.backfill_last_duration_s
        yield GaugeMetricFamily("homeiq_backfill_last_duration_seconds", "How long the last backfill took.",
                                value=duration if duration is not None else nan)  # fmt: skip
        yield GaugeMetricFamily("homeiq_backfill_unhealed_entities", "Entities whose gap could not be healed.",
                                value=len(st.backfill_unhealed))  # fmt: skip
        yield GaugeMetricFamily("homeiq_backfill_available", "0 when HA's recorder history cannot be read.",
                                value=0 if st.backfill_unavailable else 1)  # fmt: skip


def duration_family(name: str, documentation: str, label: str, times: QueryTimes) -> HistogramMetricFamily:
    """A histogram family from durations kept as plain per-name bucket counts."""
    family = HistogramMetricFamily(name, documentation, labels=[label])
    for key, counts in sorted(times.counts.items()):
        family.add_metric([key], _bucket_list(times.bounds_s, counts), times.sums[key])
    return family


class DurationCollector:
    """Exposes one ``QueryTimes`` (e.g. the HTTP server's request durations)."""

    def __init__(self, name: str, documentation: str, label: str, times: QueryTimes) -> None:
        self._args = (name, documentation, label, times)

    def collect(self) -> Iterator[Any]:
        yield duration_family(*self._args)


def _labelled_counter(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([str(key)], value)
    return family


class Metrics:
    """The app's registry: the stats collector, process RSS/CPU, and whatever else registers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="", registry=self.registry)  # process_resident_memory_bytes, _cpu_seconds_total

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
