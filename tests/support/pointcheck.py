"""Expected vs stored points: what a recording must leave in InfluxDB, and a precise diff against it.

The expectation comes from the daemon's own rules (replay parser -> duplicate filter -> PointMapper), so
``unknown``/``unavailable`` states are skipped exactly as the daemon skips them; the comparison is on the
real rows InfluxDB returns (measurement, domain/entity_id tags, timestamp, value and state fields).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.pipeline.tracking import StateTracker
from homeiq_daemon.sources.replay import iter_changes
from tests.support.influxd import InfluxServer
from tests.support.mapped import mapped_point

Key = tuple[str, str, str, int]  # measurement, domain, entity_id (object id), time_ns
Fields = tuple[float | None, str | None]  # value, state


def write_recording(path: Path, messages: Iterable[dict[str, Any]]) -> Path:
    with path.open("wb") as fh:
        for message in messages:
            fh.write(orjson.dumps(message) + b"\n")
    return path


def expected_points(*paths: Path) -> dict[Key, Fields]:
    mapper = PointMapper(MappingSettings())
    tracker = StateTracker()
    out: dict[Key, Fields] = {}
    for path in paths:
        for change in iter_changes(path):
            if not tracker.accept(change) or change.new_state is None:
                continue
            point = mapped_point(mapper, change.new_state)
            if point is None:
                continue
            value = point.fields.get("value")
            state = point.fields.get("state")
            key = (point.measurement, point.tags["domain"], point.tags["entity_id"], point.time_ns)
            number = float(value) if isinstance(value, int | float) else None
            out[key] = (number, state if isinstance(state, str) else None)
    return out


def stored_points(server: InfluxServer, db: str) -> dict[Key, Fields]:
    rows = server.rows('SELECT "value", "state" FROM /.*/ GROUP BY "domain", "entity_id"', db)
    return {(r["_measurement"], r["domain"], r["entity_id"], r["time"]): (r.get("value"), r.get("state")) for r in rows}


@dataclass
class Diff:
    expected: int
    stored: int
    missing: list[Key] = field(default_factory=list)
    wrong: list[tuple[Key, Fields, Fields]] = field(default_factory=list)
    unexpected: list[Key] = field(default_factory=list)
    per_entity_expected: Counter[str] = field(default_factory=Counter)
    per_entity_stored: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong and not self.unexpected

    def summary(self) -> str:
        short = {
            entity: (self.per_entity_expected[entity], self.per_entity_stored[entity])
            for entity in self.per_entity_expected
            if self.per_entity_expected[entity] != self.per_entity_stored[entity]
        }
        return (
            f"expected {self.expected} points, stored {self.stored}; missing {len(self.missing)} "
            f"(first {self.missing[:3]}), wrong {len(self.wrong)} (first {self.wrong[:2]}), "
            f"unexpected {len(self.unexpected)}; per-entity (expected, stored) where different: {short}"
        )


def compare(expected: dict[Key, Fields], stored: dict[Key, Fields]) -> Diff:
    diff = Diff(len(expected), len(stored))
    for key, fields in expected.items():
        diff.per_entity_expected[f"{key[1]}.{key[2]}"] += 1
        got = stored.get(key)
        if got is None:
            diff.missing.append(key)
        elif got != fields:
            diff.wrong.append((key, fields, got))
    for key in stored:
        diff.per_entity_stored[f"{key[1]}.{key[2]}"] += 1
        if key not in expected:
            diff.unexpected.append(key)
    return diff
