"""Stats histograms: Prometheus 'le' buckets (a value equal to a bound counts in that bucket), cumulative
output ending in +Inf, sum and count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.runtime.metrics import histogram_family
from homeiq_daemon.runtime.stats import Histogram


def test_bounds_are_inclusive_and_the_family_is_cumulative() -> None:
    h = Histogram((1.0, 10.0))
    for value in (0.5, 1.0, 1.5, 10.0, 11.0):
        h.observe(value)
    assert h.counts == [2, 2, 1]
    family = histogram_family("x_seconds", "doc", h)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_bucket", "1.0")] == 2
    assert samples[("x_seconds_bucket", "10.0")] == 4
    assert samples[("x_seconds_bucket", "+Inf")] == 5
    assert samples[("x_seconds_count", None)] == 5
    assert samples[("x_seconds_sum", None)] == 24.0


@settings(deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=200))
def test_every_bucket_counts_exactly_the_values_at_or_below_its_bound(values: list[float]) -> None:
    bounds = (0.1, 1.0, 5.0, 100.0)
    h = Histogram(bounds)
    for value in values:
        h.observe(value)
    family = histogram_family("y", "doc", h)
    for sample in family.samples:
        if sample.name == "y_bucket":
            le = sample.labels["le"]
            expected = len(values) if le == "+Inf" else sum(1 for v in values if v <= float(le))
            assert sample.value == expected
