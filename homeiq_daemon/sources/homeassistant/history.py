"""Home Assistant's recorder history over the WebSocket API: requests, answers, paging. Pure code, no sockets.

``history/history_during_period`` (HA >= 2022.6, ``homeassistant/components/history/websocket_api.py``):
``entity_ids`` is required; ``significant_changes_only`` and ``include_start_time_state`` default to true and
are sent false (every change, nothing before the window); ``minimal_response`` and ``no_attributes`` false
(every state with its attributes). The answer maps entity ids to lists of compressed states: ``s`` state,
``a`` attributes, ``lu`` last_updated and ``lc`` last_changed as float seconds, ``lc`` left out when it
equals ``lu``. Attributes an integration marks unrecorded are not in the recorder, so not in the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.model import EntityState, ns_to_iso

COMMAND = "history/history_during_period"
_NS = 1_000_000_000


def request(entity_ids: list[str], start_ns: int, end_ns: int | None) -> dict[str, Any]:
    """The payload of one request (without ``id``/``type``). ``end_ns`` None: up to now."""
    payload: dict[str, Any] = {
        "start_time": ns_to_iso(start_ns),
        "entity_ids": entity_ids,
        "include_start_time_state": False,
        "significant_changes_only": False,
        "minimal_response": False,
        "no_attributes": False,
    }
    if end_ns is not None:
        payload["end_time"] = ns_to_iso(end_ns)
    return payload


def seconds_to_ns(value: float) -> int:
    """HA's float seconds -> ns, exact to the microsecond (what its ISO timestamps carry)."""
    return round(value * 1_000_000) * 1000


def parse_answer(result: object, *, after_ns: dict[str, int] | None = None) -> Iterator[EntityState]:
    """The states in one answer, in the recorder's order. States at or before ``after_ns[entity]`` are
    skipped (already in the sink). Malformed entries are skipped: the recorder is trusted but not blindly."""
    if not isinstance(result, dict):
        return
    for entity_id, rows in result.items():
        if not isinstance(entity_id, str) or not isinstance(rows, list):
            continue
        floor = after_ns.get(entity_id, -1) if after_ns is not None else -1
        for row in rows:
            if not isinstance(row, dict):
                continue
            state = row.get("s")
            updated = row.get("lu")
            if not isinstance(state, str) or not isinstance(updated, float | int):
                continue
            updated_ns = seconds_to_ns(updated)
            if updated_ns <= floor:
                continue
            attributes = row.get("a")
            if not isinstance(attributes, dict):
                attributes = {}
            changed = row.get("lc")
            updated_iso = ns_to_iso(updated_ns)
            changed_iso = ns_to_iso(seconds_to_ns(changed)) if isinstance(changed, float | int) else updated_iso
            yield EntityState(entity_id, state, attributes, changed_iso, updated_iso, updated_ns)


@dataclass(slots=True)
class WindowSizer:
    """Chooses the next time window so one answer holds about ``target_states`` (bounded memory). Home
    Assistant's command has no limit on an answer, so the first window is small (``backfill.window_s``, 5
    minutes) and the window only ever follows what answers showed:

    * more than the target: scaled down by how far it was over (at most 16x in one step: a burst shrinks the
      next window at once);
    * a few states (under a quarter of the target): scaled up towards half the target at that rate (at most
      8x);
    * nothing at all says nothing about the rate after it (history may start there, e.g. before the
      recorder's first run HA answers empty), so the window only doubles;

    always within [min_s, max_s] (``backfill.max_window_s``, 6 hours: a chunk's densest stretch is met by a
    window at most that long)."""

    window_s: float
    target_states: int
    max_s: float  # backfill.max_window_s
    min_s: float = 1.0

    def next_end(self, start_ns: int, until_ns: int) -> int:
        return min(until_ns, start_ns + max(1, int(self.window_s * _NS)))

    def observe(self, states: int) -> None:
        if states > self.target_states:
            factor = max(1 / 16, 0.8 * self.target_states / states)
        elif states == 0:
            factor = 2.0
        elif states < self.target_states // 4:
            factor = min(8.0, self.target_states / (2 * states))
        else:
            return
        self.window_s = min(self.max_s, max(self.min_s, self.window_s * factor))


def sizer_for(settings: BackfillSettings) -> WindowSizer:
    return WindowSizer(settings.window_s, settings.states_per_request, max_s=max(settings.max_window_s, 1.0))


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]
