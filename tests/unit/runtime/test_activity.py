"""The status page's activity: per-minute buckets of the last hour, rates, busiest entities (fake clock)."""

from __future__ import annotations

from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.stats import Stats


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_minutes_rates_and_a_bounded_ring() -> None:
    stats = Stats()
    clock = FakeClock(60_000.0)  # a minute boundary
    activity = Activity(stats, minutes=5, rate_window_s=60.0, clock=clock)
    for _ in range(12):  # one minute: 12 samples 5 s apart, 10 events and 8 points each
        clock.now += 5
        stats.events_received["live"] += 10
        stats.points_written += 8
        activity.sample()
    buckets = activity.minutes()
    # The sample at exactly 60 s closes the first minute; its counts belong to that minute.
    assert [(b.start, b.events, b.points) for b in buckets] == [(60_000, 120, 96), (60_060, 0, 0)]
    events_per_s, points_per_s = activity.rates()
    assert events_per_s == 2.0
    assert points_per_s == 1.6
    # Ten quiet minutes, without a sample (a suspended machine): empty buckets, at most five kept.
    clock.now += 600
    activity.sample()
    buckets = activity.minutes()
    assert len(buckets) == 6
    assert all(b.events == 0 for b in buckets)
    assert [b.start for b in buckets] == list(range(60_060 + 300, 60_060 + 660, 60))
    assert activity.rates() == (0.0, 0.0)


def test_busiest_entities_are_counted_within_a_bound() -> None:
    activity = Activity(Stats(), max_entities=3)
    for entity_id, times in (("sensor.a", 5), ("sensor.b", 2), ("sensor.c", 9), ("sensor.d", 4)):
        for _ in range(times):
            activity.count_entity(entity_id)
    assert activity.busiest(2) == [("sensor.c", 9), ("sensor.a", 5)]
    assert [name for name, _ in activity.busiest()] == ["sensor.c", "sensor.a", "sensor.b"]
    assert activity.entities_not_counted == 4
