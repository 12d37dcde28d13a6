"""Batcher (size and time triggers, order) and the state tracker (duplicates, gap fill)."""

from __future__ import annotations

import asyncio

import pytest

from homeiq_daemon.model import EntityState, StateChange
from homeiq_daemon.pipeline.batcher import Batch, Batcher
from homeiq_daemon.pipeline.tracking import StateTracker
from tests.support.virtual_time import run_virtual, virtual_loop


async def test_flush_on_size_keeps_order() -> None:
    batches: list[Batch] = []
    batcher = Batcher(3, 60.0, batches.append)
    for i in range(7):
        batcher.add(f"l{i}")
    assert [b.lines for b in batches] == [["l0", "l1", "l2"], ["l3", "l4", "l5"]]
    assert len(batcher) == 1
    batcher.flush()
    assert batches[-1].lines == ["l6"]
    assert batches[0].body() == b"l0\nl1\nl2\n"


def test_flush_on_time_after_first_point() -> None:
    """On a virtual clock: the flush comes exactly flush_interval_s after the first point of a batch."""
    batches: list[tuple[float, list[str]]] = []

    async def main() -> None:
        loop = virtual_loop()
        batcher = Batcher(1000, 0.1, lambda batch: batches.append((loop.time(), batch.lines)))
        batcher.add("a")
        await asyncio.sleep(0.05)
        batcher.add("b")  # does not restart the clock
        await asyncio.sleep(0.0499)
        assert batches == []
        await asyncio.sleep(0.0002)
        assert batches == [(pytest.approx(0.1), ["a", "b"])]
        await asyncio.sleep(1.0)  # an idle batcher arms no timer
        batcher.add("c")
        await asyncio.sleep(0.2)
        assert batches[1] == (pytest.approx(1.2001), ["c"])
        assert len(batches) == 2

    run_virtual(main())


def _state(entity_id: str, value: str, t: int) -> EntityState:
    return EntityState(entity_id, value, {}, "", "", t)


def test_tracker_drops_repeats_and_older_states() -> None:
    tracker = StateTracker()
    assert tracker.accept(StateChange("s.a", _state("s.a", "1", 10), None, "live"))
    assert not tracker.accept(StateChange("s.a", _state("s.a", "1", 10), None, "live"))
    assert not tracker.accept(StateChange("s.a", _state("s.a", "0", 5), None, "live"))
    assert tracker.accept(StateChange("s.a", _state("s.a", "2", 11), None, "live"))


def test_gap_fill_reports_only_what_moved_on() -> None:
    tracker = StateTracker()
    tracker.diff_snapshot([_state("s.a", "1", 10), _state("s.b", "1", 10), _state("s.gone", "1", 1)], "snapshot")
    tracker.accept(StateChange("s.b", _state("s.b", "3", 30), None, "live"))
    changes = tracker.diff_snapshot([_state("s.a", "2", 20), _state("s.b", "2", 20), _state("s.new", "1", 5)])
    assert sorted((c.entity_id, c.new_state.state) for c in changes if c.new_state) == [("s.a", "2"), ("s.new", "1")]
    kept = tracker.get("s.b")
    assert kept is not None
    assert kept.state == "3"
    assert tracker.get("s.gone") is None


def test_snapshot_after_ha_restart_skips_restamped_unchanged_states() -> None:
    tracker = StateTracker()
    tracker.diff_snapshot([_state("s.a", "1", 10), _state("s.b", "1", 10)], "snapshot")
    changes = tracker.diff_snapshot([_state("s.a", "1", 50), _state("s.b", "2", 50)])
    assert [(c.entity_id, c.new_state.state) for c in changes if c.new_state] == [("s.b", "2")]
    restamped = tracker.get("s.a")
    assert restamped is not None
    assert restamped.last_updated_ns == 50  # the baseline moves on, so a later live event compares right
    # A live event with the same value is still written (force_update sensors report repeats on purpose).
    assert tracker.accept(StateChange("s.a", _state("s.a", "1", 60), None, "live"))


def test_snapshot_keeps_entities_of_other_sources() -> None:
    tracker = StateTracker()
    tracker.accept(StateChange("switchbot.meter_temperature", _state("switchbot.meter_temperature", "21", 10), None,
                               "switchbot"))
    tracker.diff_snapshot([_state("s.a", "1", 10)])
    assert tracker.get("switchbot.meter_temperature") is not None
    assert not tracker.accept(StateChange("switchbot.meter_temperature",
                                          _state("switchbot.meter_temperature", "21", 10), None, "switchbot"))
