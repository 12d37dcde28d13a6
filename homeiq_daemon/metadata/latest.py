"""Which latest states (and small staged values) the metadata store must write, and when. Pure code, no IO.

An SD card wears by the bytes written, and SQLite in WAL mode writes every changed page twice (to the WAL,
then at checkpoint). Rewriting a latest-state row per entity every 30 s cost ~220 MB/h with 5,000 busy
entities, for a table nobody reads between flushes: the API serves latest states from memory, and Home
Assistant's ``get_states`` snapshot restores every state at each (re)connect. So a state goes to the file:

* **soon** (the next periodic flush) when the file has no state for the entity yet (a new row, or a
  registered entity's first state), when the entity was removed, or when it comes from a source whose
  states nothing restores (SwitchBot, a replay file);
* **later** (only at the final flush, on stop) when it merely updates a row Home Assistant's snapshot will
  refresh anyway;
* **never** when what the row holds (state, friendly name, device class, unit, state class) is unchanged:
  ``last_updated`` ticking and attribute churn are not worth a page write.

Other components' small durable values (watermarks, bookkeeping) are staged here too (``stage_value``) and
go out in the same transaction as the next periodic flush: one commit per interval for everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from homeiq_daemon.model import EntityState, StateChange

TEXT_LIMIT = 512

# Origins whose latest states Home Assistant's snapshot restores at every (re)connect.
RESTORED_BY_SNAPSHOT = frozenset(("live", "snapshot", "gapfill"))

RowKey = tuple[str, str | None, str | None, str | None, str | None]


def cut(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:TEXT_LIMIT]


def row_key(state: EntityState) -> RowKey:
    """What a state row stores besides its timestamps (the part worth a write when it changes)."""
    attrs = state.attributes
    return (
        state.state[:TEXT_LIMIT],
        cut(attrs.get("friendly_name")),
        cut(attrs.get("device_class")),
        cut(attrs.get("unit_of_measurement")),
        cut(attrs.get("state_class")),
    )


@dataclass(slots=True)
class Writes:
    """One flush's work: states to upsert, entities to clear, staged key/values."""

    states: dict[str, EntityState] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.states) + len(self.removed) + len(self.values)


class LatestStates:
    __slots__ = ("_later", "_persisted", "_soon", "_values", "dropped", "max_entities")

    def __init__(self, max_entities: int) -> None:
        self.max_entities = max_entities
        # What the file holds, for rows that have a state: the hash of the row key (a 64-bit int instead of
        # five strings per entity; two different rows hashing alike would only skip one latest-state write).
        self._persisted: dict[str, int] = {}
        self._soon: dict[str, EntityState | None] = {}
        self._later: dict[str, EntityState] = {}
        self._values: dict[str, str] = {}
        self.dropped = 0

    def load(self, rows: Iterable[tuple[str, RowKey]]) -> None:
        """What the file holds (at start): states equal to these need no write."""
        self._persisted = {entity_id: hash(key) for entity_id, key in rows}

    def forget(self, entity_ids: Iterable[str]) -> None:
        """Rows deleted from the file by other means (a registry prune)."""
        for entity_id in entity_ids:
            self._persisted.pop(entity_id, None)

    def __len__(self) -> int:
        return len(self._soon) + len(self._later) + len(self._values)

    @property
    def due(self) -> int:
        """Writes the next periodic flush would make."""
        return len(self._soon) + len(self._values)

    def note(self, change: StateChange) -> None:
        entity_id = change.entity_id
        new = change.new_state
        soon = self._soon
        later = self._later
        if new is None:
            later.pop(entity_id, None)
            if entity_id in self._persisted:
                self._bounded_put(entity_id, None)
            else:
                soon.pop(entity_id, None)
            return
        known = self._persisted.get(entity_id)
        if known is not None and known == hash(row_key(new)):
            soon.pop(entity_id, None)
            later.pop(entity_id, None)
        elif known is None or change.origin not in RESTORED_BY_SNAPSHOT:
            later.pop(entity_id, None)
            self._bounded_put(entity_id, new)
        elif entity_id in soon:
            soon[entity_id] = new
        elif entity_id in later or len(soon) + len(later) < self.max_entities:
            later[entity_id] = new
        else:
            self.dropped += 1

    def _bounded_put(self, entity_id: str, state: EntityState | None) -> None:
        soon = self._soon
        if entity_id not in soon and len(soon) + len(self._later) >= self.max_entities:
            self.dropped += 1  # bounded: a flood of new entity ids cannot grow memory without end
            return
        soon[entity_id] = state

    def stage_value(self, key: str, value: str) -> None:
        """A small durable value, written with the next periodic flush (the newest value per key wins)."""
        self._values[key] = value

    def take(self, *, final: bool) -> Writes:
        """Hand over what is due (everything, when ``final``); ``restore`` it if the write fails."""
        writes = Writes(values=self._values)
        self._values = {}
        soon, self._soon = self._soon, {}
        if final:
            writes.states.update(self._later)
            self._later = {}
        for entity_id, state in soon.items():
            if state is None:
                writes.removed.append(entity_id)
            else:
                writes.states[entity_id] = state
        return writes

    def restore(self, writes: Writes) -> None:
        """A failed write: keep its work for the next flush, unless newer work arrived meanwhile."""
        for entity_id, state in writes.states.items():
            if entity_id not in self._later:
                self._soon.setdefault(entity_id, state)
        for entity_id in writes.removed:
            self._soon.setdefault(entity_id, None)
        for key, value in writes.values.items():
            self._values.setdefault(key, value)

    def written(self, writes: Writes) -> None:
        persisted = self._persisted
        for entity_id, state in writes.states.items():
            persisted[entity_id] = hash(row_key(state))
        for entity_id in writes.removed:
            persisted.pop(entity_id, None)
