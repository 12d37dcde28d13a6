"""The importer's paging against a recorder simulated in memory: answers stay bounded when history starts
long after ``--since`` (HA answers empty before its recorder's first run), and every state arrives."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.model import EntityState
from homeiq_daemon.sources.homeassistant import history, importer

DAY_S = 86_400
NS = 1_000_000_000


class Recorder:
    """``history/history_during_period`` over fixed rows: one change per entity every ``every_s`` from
    ``first_run_s`` on; a window that ends before the first run is answered empty, as HA does."""

    def __init__(self, entities: list[str], first_run_s: float, until_s: float, every_s: float) -> None:
        self.rows = {e: [first_run_s + i * every_s for i in range(int((until_s - first_run_s) // every_s))]
                     for e in entities}  # fmt: skip
        self.first_run_s = first_run_s
        self.answers: list[int] = []

    async def call(self, command: str, *, timeout_s: float, **payload: Any) -> dict[str, list[dict[str, Any]]]:
        assert command == history.COMMAND
        assert payload["significant_changes_only"] is False
        assert payload["include_start_time_state"] is False
        start = datetime.fromisoformat(payload["start_time"]).timestamp()
        end = datetime.fromisoformat(payload["end_time"]).timestamp()
        answer: dict[str, list[dict[str, Any]]] = {}
        if end >= self.first_run_s:
            for entity_id in payload["entity_ids"]:
                rows = [{"s": "1.5", "a": {}, "lu": t} for t in self.rows[entity_id] if start <= t < end]
                if rows:
                    answer[entity_id] = rows
        self.answers.append(sum(len(v) for v in answer.values()))
        return answer


def test_quiet_start_then_busy_history_stays_within_the_window_bound(tmp_path: Path) -> None:
    now_s = 1_800_000_000.0
    entities = [f"sensor.power_{i}" for i in range(20)]
    # Asked for 30 days; the recorder holds the last 10, one change per entity per minute.
    recorder = Recorder(entities, now_s - 10 * DAY_S, now_s, every_s=60.0)
    settings = BackfillSettings(states_per_request=2_000)
    seen: set[tuple[str, int]] = set()

    async def write(states: list[EntityState]) -> int:
        seen.update((s.entity_id, s.last_updated_ns) for s in states)
        return len(states)

    plan = importer.ImportPlan("k", entities, int((now_s - 30 * DAY_S) * NS), int(now_s * NS), _size=20)
    asyncio.run(importer.run_import(recorder.call, plan, settings, write, importer.Checkpoint(tmp_path / "c")))

    expected = {(e, history.seconds_to_ns(t)) for e, rows in recorder.rows.items() for t in rows}
    assert seen == expected
    # The first busy answer after 20 empty days holds at most max_window_s (6 h) of the chunk: 20 x 360.
    bound = len(entities) * settings.max_window_s / 60.0
    assert max(recorder.answers) <= bound
    assert max(recorder.answers) < len(expected) / 10
