"""Home Assistant's ``subscribe_entities`` stream: compressed states and state diffs -> full states. Pure code.

What HA's own frontend subscribes to (``homeassistant/components/websocket_api/messages.py``): after the
result, one event ``{"a": {entity_id: compressed}}`` with every state, then events of

* ``"a"``: entities added, compressed: ``{"s": state, "a": attributes, "c": context, "lc": last_changed,
  "lu": last_updated}`` (timestamps as float seconds; ``lu`` left out when equal to ``lc``);
* ``"c"``: diffs ``{entity_id: {"+": {...changed keys...}, "-": {"a": [removed attribute names]}}}``; ``"+"``
  holds ``s`` when the state changed, ``a`` with the attributes whose value changed, and ``lc`` when
  last_changed moved (last_updated moved with it) or else ``lu``;
* ``"r"``: removed entity ids.

A change is ~130 bytes instead of the ~1 KB of a ``state_changed`` event carrying both states. Full states
are rebuilt from the previous one: an unchanged attribute dict is the previous dict itself (no copy), and a
timestamp is rebuilt to the microsecond (HA's resolution: a float's error at today's epoch is far below half
a microsecond, so rounding to the microsecond is exact) as the same ISO text HA's events carry.

Two things a diff cannot say, both rare: an attribute that appears with the value ``None`` (HA compares
``old.get(key) != value``, so it is not sent) and a new order of unchanged attribute names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import EntityState, StateChange

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def stamp(seconds: object) -> tuple[str, int]:
    """A compressed timestamp -> (ISO 8601 text as in HA's events, integer nanoseconds)."""
    if not isinstance(seconds, float | int) or isinstance(seconds, bool):
        raise ProtocolError(f"timestamp {str(seconds)[:40]!r} is not a number")
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ProtocolError(f"timestamp {seconds!r} is out of range") from None
    return moment.isoformat(), ((moment - _EPOCH) // _ONE_US) * 1000


def _full_state(entity_id: str, raw: object) -> EntityState:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{entity_id[:80]}: compressed state is not an object")
    state = raw.get("s")
    attributes = raw.get("a", {})
    if not isinstance(state, str):
        raise ProtocolError(f"{entity_id[:80]}: state is not a string")
    if not isinstance(attributes, dict):
        raise ProtocolError(f"{entity_id[:80]}: attributes is not an object")
    changed, changed_ns = stamp(raw.get("lc"))
    updated_raw = raw.get("lu")
    if updated_raw is None:  # last_updated equals last_changed: one text for both
        return EntityState(entity_id, state, attributes, changed, changed, changed_ns)
    updated, updated_ns = stamp(updated_raw)
    return EntityState(entity_id, state, attributes, changed, updated, updated_ns)


def _check_entity_id(entity_id: object) -> str:
    if not isinstance(entity_id, str) or not 2 < len(entity_id) <= 255 or "." not in entity_id[1:-1]:
        raise ProtocolError(f"bad entity_id {str(entity_id)[:80]!r}")
    return entity_id


def _apply_diff(old: EntityState, diff: object) -> EntityState:
    if not isinstance(diff, dict):
        raise ProtocolError(f"{old.entity_id}: diff is not an object")
    plus = diff.get("+", {})
    minus = diff.get("-")
    if not isinstance(plus, dict):
        raise ProtocolError(f"{old.entity_id}: diff additions are not an object")
    state = plus.get("s", old.state)
    if not isinstance(state, str):
        raise ProtocolError(f"{old.entity_id}: state is not a string")
    attributes = old.attributes
    changed_attrs = plus.get("a")
    removed = minus.get("a") if isinstance(minus, dict) else None
    if changed_attrs is not None or removed:
        if changed_attrs is not None and not isinstance(changed_attrs, dict):
            raise ProtocolError(f"{old.entity_id}: changed attributes are not an object")
        attributes = {**attributes, **changed_attrs} if changed_attrs else dict(attributes)
        if isinstance(removed, list):
            for key in removed:
                attributes.pop(key, None)
    last_changed, last_updated, last_updated_ns = old.last_changed, old.last_updated, old.last_updated_ns
    if "lc" in plus:
        last_changed, last_updated_ns = stamp(plus["lc"])
        last_updated = last_changed
    elif "lu" in plus:
        last_updated, last_updated_ns = stamp(plus["lu"])
    return EntityState(old.entity_id, state, attributes, last_changed, last_updated, last_updated_ns)


class EntityStream:
    """The states of one ``subscribe_entities`` subscription, rebuilt event by event."""

    __slots__ = ("_states", "malformed")

    def __init__(self) -> None:
        self._states: dict[str, EntityState] = {}
        self.malformed: list[str] = []

    def __len__(self) -> int:
        return len(self._states)

    def initial(self, event: dict[str, Any]) -> list[EntityState]:
        """The first event: every state (the snapshot). Malformed entries are skipped (see ``malformed``)."""
        self._states = {}
        self.malformed = []
        self._add(event.get("a"), None)
        return list(self._states.values())

    def changes(self, event: dict[str, Any]) -> list[StateChange]:
        """A later event -> the changes it holds, in the order HA made them (one event holds one change)."""
        self.malformed = []
        out: list[StateChange] = []
        diffs = event.get("c")
        if isinstance(diffs, dict):
            states = self._states
            for entity_id, diff in diffs.items():
                old = states.get(entity_id)
                if old is None:
                    self.malformed.append(f"diff for unknown entity {str(entity_id)[:80]!r}")
                    continue
                try:
                    new = states[entity_id] = _apply_diff(old, diff)
                except ProtocolError as exc:
                    self.malformed.append(str(exc))
                    continue
                out.append(StateChange(entity_id, new, None, "live"))
        elif diffs is not None:
            self.malformed.append("diffs are not an object")
        if "a" in event:
            self._add(event["a"], out)
        removed = event.get("r")
        if isinstance(removed, list):
            for entity_id in removed:
                if isinstance(entity_id, str) and self._states.pop(entity_id, None) is not None:
                    out.append(StateChange(entity_id, None, None, "live"))
        elif removed is not None:
            self.malformed.append("removals are not a list")
        return out

    def _add(self, adds: object, out: list[StateChange] | None) -> None:
        if not isinstance(adds, dict):
            if adds is not None:
                self.malformed.append("added states are not an object")
            return
        for entity_id, raw in adds.items():
            try:
                state = _full_state(_check_entity_id(entity_id), raw)
            except ProtocolError as exc:
                self.malformed.append(str(exc))
                continue
            self._states[entity_id] = state
            if out is not None:
                out.append(StateChange(entity_id, state, None, "live"))
