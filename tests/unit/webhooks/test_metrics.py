"""The webhook counters as Prometheus families (rendered by the real prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from homeiq_daemon.webhooks.metrics import WebhookCollector
from homeiq_daemon.webhooks.stats import WebhookStats


def render(stats: WebhookStats, collector: WebhookCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_counters_and_latency_histogram() -> None:
    stats = WebhookStats()
    collector = WebhookCollector(stats)
    stats.deliveries.update({"delivered": 3, "dead": 1})
    stats.matches["door"] = 4
    stats.attempts, stats.retries, stats.dead_letters, stats.pending = 9, 5, 1, 2
    stats.attempt_errors["503"] = 5
    for seconds in (0.004, 0.015, 7.0):
        stats.record_latency(seconds)
    text = render(stats, collector)
    assert 'homeiq_webhook_deliveries_total{outcome="delivered"} 3.0' in text
    assert 'homeiq_webhook_deliveries_total{outcome="dead"} 1.0' in text
    assert 'homeiq_webhook_matches_total{rule="door"} 4.0' in text
    assert 'homeiq_webhook_attempt_errors_total{status="503"} 5.0' in text
    assert "homeiq_webhook_retries_total 5.0" in text
    assert "homeiq_webhook_pending 2.0" in text
    assert 'homeiq_webhook_latency_seconds_bucket{le="0.005"} 1.0' in text
    assert 'homeiq_webhook_latency_seconds_bucket{le="0.02"} 2.0' in text
    assert 'homeiq_webhook_latency_seconds_bucket{le="5.0"} 2.0' in text
    assert 'homeiq_webhook_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert stats.latency_s == []  # drained: the next scrape adds only new samples
    stats.record_latency(0.001)
    text = render(stats, collector)
    assert 'homeiq_webhook_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "homeiq_webhook_latency_seconds_count 4.0" in text
