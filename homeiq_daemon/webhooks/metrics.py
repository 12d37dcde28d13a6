"""Prometheus families for the webhook counters, read from ``WebhookStats`` at scrape time
(registered with the app's ``Metrics`` like any other collector)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from homeiq_daemon.webhooks.stats import WebhookStats

LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0)


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class WebhookCollector:
    def __init__(self, stats: WebhookStats) -> None:
        self._stats = stats
        self._counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._sum_s = 0.0

    def _drain(self) -> None:
        samples, self._stats.latency_s = self._stats.latency_s, []
        for seconds in samples:
            self._sum_s += seconds
            for index, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self._counts[index] += 1
                    break
            else:
                self._counts[-1] += 1

    def collect(self) -> Iterator[Any]:
        st = self._stats
        yield _counter("homeiq_webhook_deliveries", "Finished deliveries, by outcome.", "outcome", st.deliveries)
        yield _counter("homeiq_webhook_matches", "Rule matches (before throttling), by rule.", "rule", st.matches)
        yield _counter("homeiq_webhook_throttled", "Matches dropped by throttle_s, by rule.", "rule", st.throttled)
        yield _counter("homeiq_webhook_attempt_errors", "Failed attempts, by HTTP status or no_answer.", "status",
                       st.attempt_errors)  # fmt: skip
        yield CounterMetricFamily("homeiq_webhook_attempts", "HTTP requests made.", value=st.attempts)
        yield CounterMetricFamily("homeiq_webhook_retries", "Attempts after the first.", value=st.retries)
        yield CounterMetricFamily("homeiq_webhook_dead_letters", "Deliveries given up.", value=st.dead_letters)
        yield GaugeMetricFamily("homeiq_webhook_pending", "Undelivered deliveries in the outbox.", value=st.pending)
        self._drain()
        latency = HistogramMetricFamily(
            "homeiq_webhook_latency_seconds", "From the event reaching the daemon to the receiver's 2xx."
        )
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(LATENCY_BUCKETS_S, self._counts, strict=False):
            running += count
            buckets.append((repr(bound), float(running)))
        buckets.append(("+Inf", float(running + self._counts[-1])))
        latency.add_metric([], buckets, self._sum_s)
        yield latency
