"""The independent "nothing lost" oracle: what InfluxDB must hold, derived from the *input* alone.

Nothing here imports the daemon. The input is read with a plain JSON reader (a replay file: one WebSocket
frame, coalesced array, bare event or event data per line), or taken as the states Home Assistant returned to
REST calls. Each state becomes the point Home Assistant's own ``influxdb`` integration writes with its default
options (``event_to_json`` in homeassistant/components/influxdb/__init__.py, 2024.3.3, and ``state_as_number``
in homeassistant/helpers/state.py), with the differences the README documents for this daemon:

* the time is the state's ``last_updated`` (HA uses the time the event fired);
* a NaN or infinite state ``value`` is dropped (HA drops only non-finite attribute fields);
* a field named ``time`` is written as ``time_`` (InfluxDB drops a point with a ``time`` field);
* per entity, a change whose ``last_updated`` is not later than the last one taken is not written again
  (docs/reliability.md: timestamps come from the events; replays and reconnect snapshots repeat them).

What InfluxDB stores is read back with ``SELECT * ... GROUP BY *``: every field and tag of every point is
compared, not only ``value`` and ``state``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.influxd import InfluxServer

FieldValue = float | str
PointKey = tuple[str, tuple[tuple[str, str], ...], int]  # measurement, sorted tags, time in ns
Points = dict[PointKey, dict[str, FieldValue]]

_SKIPPED = {"unknown", "unavailable", ""}
_AS_ONE = {"on", "locked", "above_horizon", "open", "home"}
_AS_ZERO = {"off", "unlocked", "unknown", "below_horizon", "closed", "not_home"}
# homeassistant/components/influxdb/const.py: a string attribute with a number in it also gets a float field.
_DIGIT_TAIL = re.compile(r"^[^\.]*\d+\.?\d+[^\.]*$")
_NOT_DECIMAL = re.compile(r"[^\d.]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ns(text: str) -> int:
    delta = datetime.fromisoformat(text) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# --- the input ----------------------------------------------------------------------------------------


def _states_of(message: Any) -> Iterator[dict[str, Any]]:
    if isinstance(message, list):
        for item in message:
            yield from _states_of(item)
        return
    if not isinstance(message, dict):
        return
    event = message.get("event", message)  # a frame {"type": "event", "event": {...}} or a bare event
    data = event.get("data", event) if isinstance(event, dict) else None
    if isinstance(event, dict) and event.get("event_type") not in (None, "state_changed"):
        return
    if isinstance(data, dict) and isinstance(data.get("new_state"), dict):
        yield data["new_state"]


def replay_states(*paths: Path) -> list[dict[str, Any]]:
    """The new states of a replay file, in file order, read with the standard library's JSON reader."""
    out: list[dict[str, Any]] = []
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # the daemon skips (and counts) a malformed line too
                out.extend(_states_of(message))
    return out


# --- the mapping (HA's influxdb integration, default options) -------------------------------------------


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        return None


def ha_point(state: dict[str, Any]) -> tuple[PointKey, dict[str, FieldValue]] | None:
    """The point for one state as HA's integration builds it, with the daemon's documented differences."""
    entity_id, value = state["entity_id"], state["state"]
    if value in _SKIPPED or value is None:
        return None
    domain, _, object_id = entity_id.partition(".")
    attributes: dict[str, Any] = state.get("attributes") or {}
    fields: dict[str, Any] = {}
    number = _float(value)
    if number is not None:
        fields["value"] = number
    elif value in _AS_ONE or value in _AS_ZERO:
        fields["state"] = value
        fields["value"] = 1.0 if value in _AS_ONE else 0.0
    else:
        fields["state"] = value
    unit = attributes.get("unit_of_measurement")
    measurement = entity_id if unit in (None, "") else unit
    for key, attr in attributes.items():
        if key == "unit_of_measurement" and unit not in (None, ""):
            continue
        if key in fields:
            key = f"{key}_"
        as_float = _float(attr)  # HA: float(value), else the text in <key>_str
        if as_float is not None:
            fields[key] = as_float
        else:
            text = str(attr)
            fields[f"{key}_str"] = text
            if _DIGIT_TAIL.match(text):
                fields[key] = float(_NOT_DECIMAL.sub("", text))
        if isinstance(fields.get(key), float) and not math.isfinite(fields[key]):
            del fields[key]
    if isinstance(fields.get("value"), float) and not math.isfinite(fields["value"]):
        del fields["value"]  # the daemon's difference: HA would send it and InfluxDB refuse the line
    if "time" in fields:
        fields["time_"] = fields.pop("time")
    if not fields:
        return None
    tags = (("domain", domain), ("entity_id", object_id))
    return (str(measurement), tags, iso_ns(state["last_updated"])), fields


def expected_from_states(states: Iterable[dict[str, Any]]) -> Points:
    """What InfluxDB must hold after these states, in this order, went through the daemon."""
    last_taken: dict[str, int] = {}
    out: Points = {}
    for state in states:
        updated = iso_ns(state["last_updated"])
        if last_taken.get(state["entity_id"], -1) >= updated:
            continue
        last_taken[state["entity_id"]] = updated
        point = ha_point(state)
        if point is None:
            continue
        key, fields = point
        out.setdefault(key, {}).update(fields)  # InfluxDB merges a rewrite of the same series and time
    return out


def expected_from_replay(*paths: Path) -> Points:
    return expected_from_states(replay_states(*paths))


# --- what InfluxDB holds, and the diff ---------------------------------------------------------------------


def stored(server: InfluxServer, db: str) -> Points:
    """Every point of every measurement, all fields and tags, as InfluxDB returns them."""
    out: Points = {}
    for series in server.query('SELECT * FROM /.*/ GROUP BY *', db):
        tags = tuple(sorted((k, v) for k, v in series.get("tags", {}).items() if v != ""))
        columns = series["columns"]
        for row in series.get("values", []):
            values = dict(zip(columns, row, strict=True))
            time_ns = values.pop("time")
            fields = {k: (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
                      for k, v in values.items() if v is not None}
            out[(series["name"], tags, int(time_ns))] = fields
    return out


@dataclass
class Mismatch:
    expected: int
    stored: int
    missing: list[PointKey] = field(default_factory=list)
    unexpected: list[PointKey] = field(default_factory=list)
    wrong: list[tuple[PointKey, dict[str, FieldValue], dict[str, FieldValue]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong)

    def summary(self) -> str:
        def fields_diff(want: dict[str, FieldValue], got: dict[str, FieldValue]) -> dict[str, Any]:
            keys = sorted(set(want) | set(got), key=str)
            return {k: (want.get(k), got.get(k)) for k in keys if want.get(k) != got.get(k)}

        first_wrong = [(key, fields_diff(want, got)) for key, want, got in self.wrong[:3]]
        return (
            f"expected {self.expected} points, InfluxDB holds {self.stored}: {len(self.missing)} missing "
            f"(first {self.missing[:3]}), {len(self.unexpected)} unexpected (first {self.unexpected[:3]}), "
            f"{len(self.wrong)} with other fields (first, field: (expected, stored): {first_wrong})"
        )


def compare(expected: Points, got: Points) -> Mismatch:
    diff = Mismatch(len(expected), len(got))
    for key, fields in expected.items():
        have = got.get(key)
        if have is None:
            diff.missing.append(key)
        elif have != fields:
            diff.wrong.append((key, fields, have))
    diff.unexpected = [key for key in got if key not in expected]
    return diff


def assert_nothing_lost(expected: Points, server: InfluxServer, db: str) -> Mismatch:
    diff = compare(expected, stored(server, db))
    assert diff.ok, diff.summary()
    return diff
