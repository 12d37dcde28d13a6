"""Last state seen per entity: drops duplicates and fills the gap after a reconnect. Pure code.

Home Assistant re-emits every entity when it restarts, and a reconnect's ``get_states`` snapshot repeats
states we already have. A state is new only when its ``last_updated`` moved on; everything else would be a
duplicate point (InfluxDB would overwrite it, but why write it at all). In a snapshot, a state whose value and
attributes did not change is not new either, even with a newer ``last_updated`` (a restarted HA re-stamps what
it restores).
"""

from __future__ import annotations

from collections.abc import Iterable

from homeiq_daemon.model import EntityState, Origin, StateChange

# Origins whose entities Home Assistant's snapshots describe; others (SwitchBot) are kept across snapshots.
_HA_ORIGINS = frozenset(("live", "snapshot", "gapfill", "replay"))


class StateTracker:
    __slots__ = ("_foreign", "_last")

    def __init__(self) -> None:
        self._last: dict[str, EntityState] = {}
        self._foreign: set[str] = set()

    def __len__(self) -> int:
        return len(self._last)

    def get(self, entity_id: str) -> EntityState | None:
        return self._last.get(entity_id)

    def entity_ids(self) -> list[str]:
        return list(self._last)

    def accept(self, change: StateChange) -> bool:
        """Record a live change; False when it repeats (or predates) what we already have."""
        new = change.new_state
        if new is None:
            self._last.pop(change.entity_id, None)
            return True
        known = self._last.get(change.entity_id)
        if known is not None and known.last_updated_ns >= new.last_updated_ns:
            return False
        self._last[change.entity_id] = new
        if change.origin not in _HA_ORIGINS:
            self._foreign.add(change.entity_id)
        return True

    def diff_snapshot(self, states: Iterable[EntityState], origin: Origin = "gapfill") -> list[StateChange]:
        """Changes between what we had and a fresh snapshot; records the snapshot as the new baseline.

        Entities missing from the snapshot are forgotten (not reported as changes: no point to write).
        """
        changes: list[StateChange] = []
        # Entities of other sources are not in HA's snapshot and must not be forgotten because of it.
        fresh: dict[str, EntityState] = {eid: self._last[eid] for eid in self._foreign if eid in self._last}
        for state in states:
            fresh[state.entity_id] = state
            known = self._last.get(state.entity_id)
            if known is None:
                changes.append(StateChange(state.entity_id, state, None, origin))
            elif known.last_updated_ns < state.last_updated_ns:
                # A restarted HA restores entities with their old state and attributes but a new
                # last_updated (HA issue #62094): that is not a change, and writing it would add a point per
                # entity at every HA restart. Only live events may repeat a value (force_update sensors).
                if _differs(known, state):
                    changes.append(StateChange(state.entity_id, state, known, origin))
            elif known.last_updated_ns > state.last_updated_ns:
                # A live event newer than the snapshot already arrived: keep it.
                fresh[state.entity_id] = known
        self._last = fresh
        return changes


def _differs(known: EntityState, state: EntityState) -> bool:
    try:
        return known.state != state.state or known.attributes != state.attributes
    except RecursionError:  # attributes nested deeper than Python compares: call it a change
        return True
