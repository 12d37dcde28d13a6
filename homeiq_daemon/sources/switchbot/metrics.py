"""SwitchBot counters (``SwitchBotStats``, plain ints on the hot path) and their Prometheus families, read at
scrape time. Registered with the app's ``Metrics`` like any other collector."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from homeiq_daemon.sources.switchbot.api import DailyBudget, utc_day


@dataclass(slots=True)
class SwitchBotStats:
    budget: DailyBudget
    requests: Counter[str] = field(default_factory=Counter)  # by outcome: ok, transient, quota, auth, rejected
    webhooks: Counter[str] = field(default_factory=Counter)  # by outcome: accepted, ignored, malformed, wrong_secret
    devices_known: int = 0
    devices_polled: int = 0
    poll_interval_s: float = math.nan
    halted_reason: str | None = None  # quota | auth | budget while polling is stopped


def _counter(name: str, doc: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class SwitchBotCollector:
    def __init__(self, stats: SwitchBotStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        st = self._stats
        budget = st.budget
        today = budget.used if budget.day == utc_day(time.time()) else 0
        yield GaugeMetricFamily("homeiq_switchbot_api_requests_today",
                                "SwitchBot Cloud requests made today (UTC day).", value=today)  # fmt: skip
        yield GaugeMetricFamily("homeiq_switchbot_api_requests_allowed",
                                "Requests per day the daemon allows itself (daily_budget - reserved_requests).",
                                value=budget.cap)  # fmt: skip
        yield _counter("homeiq_switchbot_api_requests", "SwitchBot Cloud requests, by outcome.", "outcome",
                       st.requests)  # fmt: skip
        yield _counter("homeiq_switchbot_webhook_requests", "Pushes received, by outcome.", "outcome", st.webhooks)
        yield GaugeMetricFamily("homeiq_switchbot_devices", "Devices in the account's device list.",
                                value=st.devices_known)  # fmt: skip
        yield GaugeMetricFamily("homeiq_switchbot_devices_polled", "Devices polled for their status.",
                                value=st.devices_polled)  # fmt: skip
        yield GaugeMetricFamily("homeiq_switchbot_poll_interval_seconds", "Seconds between two polls of a device.",
                                value=st.poll_interval_s)  # fmt: skip
        halted = GaugeMetricFamily("homeiq_switchbot_polling_halted", "1 while polling is stopped until the next day.",
                                   labels=["reason"])  # fmt: skip
        for reason in ("quota", "auth", "budget"):
            halted.add_metric([reason], 1 if st.halted_reason == reason else 0)
        yield halted
