"""Counters of the webhook component, as plain attributes (a metrics collector reads them at scrape time)."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class WebhookStats:
    matches: Counter[str] = field(default_factory=Counter)  # by rule: conditions met (before throttle)
    throttled: Counter[str] = field(default_factory=Counter)  # by rule: matches dropped by throttle_s
    deliveries: Counter[str] = field(default_factory=Counter)  # by outcome: delivered|rejected|dead|dropped
    attempts: int = 0  # HTTP requests made
    retries: int = 0  # attempts after the first one of a delivery
    dead_letters: int = 0  # gave up after the horizon (or the target was removed from the config)
    attempt_errors: Counter[str] = field(default_factory=Counter)  # by HTTP status or error class
    pending: int = 0  # undelivered rows in the outbox (gauge)
    # Seconds from the event reaching the daemon to the receiver's 2xx; drained by the metrics collector.
    latency_s: list[float] = field(default_factory=list)

    # The last deliveries (any outcome), newest last, for the status page.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def record_outcome(
        self, rule: str, target: str, outcome: str, *, attempts: int, http_status: int | None, error: str | None
    ) -> None:
        self.deliveries[outcome] += 1
        self.recent.append(
            {
                "time": round(time.time(), 3),
                "rule": rule,
                "target": target,
                "outcome": outcome,
                "attempts": attempts,
                "http_status": http_status,
                "error": None if error is None else error[:200],
            }
        )

    def record_latency(self, seconds: float) -> None:
        if len(self.latency_s) < 10_000:
            self.latency_s.append(seconds)
