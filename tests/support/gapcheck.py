"""Gap scenarios against the real Home Assistant: a steady stream of changes made through HA's REST API, and
the count of what InfluxDB holds for them (missing, duplicates), read back with plain InfluxQL.

Each change sets a sensor to the next integer, so a value identifies one change: a value stored twice (at two
timestamps) is a duplicate, an expected ``last_updated`` absent from InfluxDB is a missing change.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.support.influxd import InfluxServer
from tests.support.real_ha import RealHomeAssistant

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNIT = "gapunits"


def iso_ns(iso: str) -> int:
    """HA's ISO ``last_updated`` -> ns, independently of the daemon's parser."""
    delta = datetime.fromisoformat(iso) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class ChangeStream:
    """A thread setting ``entity_id`` to 1, 2, 3, ... at about ``rate_per_s``; remembers each change's
    ``last_updated`` as HA answered it. ``made`` counts the changes; ``wait_made`` waits for a count."""

    def __init__(self, ha: RealHomeAssistant, entity_id: str, rate_per_s: float = 20.0, start: int = 1) -> None:
        self.ha = ha
        self.entity_id = entity_id
        self.interval_s = 1.0 / rate_per_s
        self.next_value = start
        self.expected: dict[int, int] = {}  # value -> last_updated ns
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.paused = threading.Event()

    @property
    def made(self) -> int:
        return len(self.expected)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def one(self) -> None:
        """Make one change now (from the caller's thread)."""
        value = self.next_value
        self.next_value += 1
        body = self.ha.set_state(self.entity_id, str(value), {"unit_of_measurement": UNIT})
        with self._cond:
            self.expected[value] = iso_ns(body["last_updated"])
            self._cond.notify_all()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.paused.is_set():
                time.sleep(0.02)
                next_at = time.monotonic()
                continue
            try:
                self.one()
            except (OSError, RuntimeError) as exc:  # HA restarting: retried on the next tick
                self.errors.append(str(exc)[:200])
                time.sleep(0.1)
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def wait_made(self, count: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.expected) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    made = len(self.expected)
                    raise AssertionError(f"only {made} of {count} changes made; errors: {self.errors[-3:]}")
                self._cond.wait(min(left, 0.5))


@dataclass
class GapReport:
    expected: int
    stored: int
    missing: list[int] = field(default_factory=list)  # values
    duplicates: int = 0
    extra: list[tuple[float, int]] = field(default_factory=list)  # stored (value, time) nobody expected

    def __str__(self) -> str:
        return (
            f"expected {self.expected}, stored {self.stored}, missing {len(self.missing)} "
            f"(first {self.missing[:10]}), duplicates {self.duplicates}"
        )


def check(influx: InfluxServer, db: str, stream: ChangeStream) -> GapReport:
    object_id = stream.entity_id.partition(".")[2]
    rows = influx.rows(f"SELECT value FROM \"{UNIT}\" WHERE entity_id = '{object_id}'", db)
    by_value = Counter(int(row["value"]) for row in rows)
    stored_times = {(int(row["value"]), int(row["time"])) for row in rows}
    missing = sorted(v for v, ts in stream.expected.items() if (v, ts) not in stored_times)
    duplicates = sum(n - 1 for n in by_value.values() if n > 1)
    return GapReport(len(stream.expected), len(rows), missing, duplicates)


def wait_complete(influx: InfluxServer, db: str, stream: ChangeStream, timeout_s: float = 60.0) -> GapReport:
    """Poll until nothing is missing (or the ceiling passes); returns the last report either way."""
    deadline = time.monotonic() + timeout_s
    report = check(influx, db, stream)
    while report.missing and time.monotonic() < deadline:
        time.sleep(0.25)
        report = check(influx, db, stream)
    return report
