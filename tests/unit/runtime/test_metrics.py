"""/metrics from the daemon's counters, read back with prometheus_client's own text parser: names, labels,
values and cumulative histogram buckets as Prometheus sees them."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from homeiq_daemon import __version__
from homeiq_daemon.runtime.metrics import Metrics, StatsCollector
from homeiq_daemon.runtime.stats import Stats


def scrape(stats: Stats, spool_max_bytes: int = 1 << 20) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    metrics = Metrics()
    metrics.register(StatsCollector(stats, spool_max_bytes=spool_max_bytes))
    samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_counters_gauges_and_labels() -> None:
    stats = Stats()
    stats.events_received.update({"home_assistant": 7, "replay": 3})
    stats.points_dropped.update({"spool_full": 5})
    stats.points_written = 42
    stats.sink_state = "down"
    stats.hub_connected = True
    stats.spool_points, stats.spool_bytes, stats.spool_records = 11, 2048, 2
    got = scrape(stats, spool_max_bytes=4096)
    assert got[("homeiq_events_received_total", (("source", "home_assistant"),))] == 7
    assert got[("homeiq_events_received_total", (("source", "replay"),))] == 3
    assert got[("homeiq_points_dropped_total", (("reason", "spool_full"),))] == 5
    assert got[("homeiq_points_written_total", ())] == 42
    assert got[("homeiq_sink_up", ())] == 0
    assert got[("homeiq_hub_connected", ())] == 1
    assert (got[("homeiq_spool_points", ())], got[("homeiq_spool_bytes", ())]) == (11, 2048)
    assert got[("homeiq_spool_max_bytes", ())] == 4096
    assert math.isnan(got[("homeiq_last_event_age_seconds", ())])  # no event yet: not a made-up age
    [(labels, value)] = [(dict(labels), v) for (name, labels), v in got.items() if name == "homeiq_build_info"]
    assert (labels["version"], value) == (__version__, 1)
    stats.sink_state = "embedded"
    assert scrape(stats)[("homeiq_sink_up", ())] == 1


def test_histogram_buckets_are_cumulative_and_end_in_inf() -> None:
    stats = Stats()
    bounds = stats.flush_histogram.bounds
    for seconds in (bounds[0] / 2, bounds[0] / 2, bounds[1], bounds[-1] * 10):
        stats.flush_histogram.observe(seconds)
    got = scrape(stats)
    bucket = {dict(labels)["le"]: value for (name, labels), value in got.items()
              if name == "homeiq_flush_duration_seconds_bucket"}
    assert bucket[repr(float(bounds[0]))] == 2
    assert bucket[repr(float(bounds[1]))] == 3  # le is inclusive: the observation at the bound counts there
    assert bucket[repr(float(bounds[-1]))] == 3
    assert bucket["+Inf"] == 4
    assert got[("homeiq_flush_duration_seconds_count", ())] == 4
    assert math.isclose(got[("homeiq_flush_duration_seconds_sum", ())], bounds[0] + bounds[1] + bounds[-1] * 10)
    values = [bucket[k] for k in sorted(bucket, key=lambda le: math.inf if le == "+Inf" else float(le))]
    assert values == sorted(values)
