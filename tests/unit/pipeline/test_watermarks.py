"""Watermarks: committed in hand-on order, floors while a backfill runs, an atomic file across restarts."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.pipeline.batcher import Batch
from homeiq_daemon.pipeline.watermarks import Watermarks


def batch(marks: dict[str, int], live_max: int | None = None) -> Batch:
    return Batch([f"m v=1 {t}" for t in marks.values()], marks=dict(marks), live_max_ns=live_max)


def test_out_of_order_acknowledgements_commit_only_the_acknowledged_prefix(tmp_path: Path) -> None:
    wm = Watermarks(tmp_path / "w.json")
    first, second = batch({"sensor.a": 10}, 10), batch({"sensor.a": 20, "sensor.b": 25}, 25)
    wm.track(first)
    wm.track(second)
    wm.acknowledged(second)  # spooled before the first was written
    assert wm.start_for("sensor.a") is None
    assert wm.safe_until_ns is None
    wm.acknowledged(first)
    assert wm.start_for("sensor.a") == 25  # the live mark covers it: every live change up to 25 is in
    assert wm.start_for("sensor.b") == 25
    assert wm.safe_until_ns == 25


def test_backfill_batches_do_not_move_the_live_mark(tmp_path: Path) -> None:
    wm = Watermarks(tmp_path / "w.json")
    live, old = batch({"sensor.a": 100}, 100), batch({"sensor.b": 500})
    for b in (live, old):
        wm.track(b)
        wm.acknowledged(b)
    assert wm.safe_until_ns == 100
    assert wm.start_for("sensor.b") == 500
    assert wm.start_for("sensor.c") == 100


def test_a_floor_is_kept_until_the_backfill_is_committed(tmp_path: Path) -> None:
    wm = Watermarks(tmp_path / "w.json")
    wm.track(first := batch({"sensor.a": 50}, 50))
    wm.acknowledged(first)
    wm.set_floors({"sensor.a": 50})
    wm.track(live := batch({"sensor.a": 90}, 90))
    wm.acknowledged(live)
    assert wm.start_for("sensor.a") == 50  # live moved on, the hole behind it is not healed yet
    wm.track(filled := batch({"sensor.a": 70}))
    cleared: list[bool] = []
    wm.when_committed(lambda: (wm.clear_floors(["sensor.a"], {"sensor.a": 50}), cleared.append(True)))
    assert not cleared
    wm.acknowledged(filled)
    assert cleared == [True]
    assert wm.start_for("sensor.a") == 90


def test_saved_file_restores_marks_and_floors(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    wm = Watermarks(path)
    wm.track(b := batch({"sensor.a": 7, "sensor.b": 9}, 9))
    wm.acknowledged(b)
    wm.set_floors({"sensor.b": 3})
    assert wm.maybe_save()  # a fresh state dir saves at once
    assert not wm.maybe_save()  # nothing changed since
    again = Watermarks(path)
    again.load()
    assert again.loaded
    assert again.start_for("sensor.a") == 9
    assert again.start_for("sensor.b") == 3
    assert again.previous_saved_at_ns is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_saves_are_coalesced_to_the_interval(tmp_path: Path) -> None:
    now = [0.0]
    wm = Watermarks(tmp_path / "w.json", save_interval_s=300, clock=lambda: now[0])
    for t in range(1, 100):
        wm.track(b := batch({"sensor.a": t}, t))
        wm.acknowledged(b)
        now[0] += 1.0
        wm.maybe_save()
    assert wm.saves == 1  # the first commit, then nothing until the interval passed
    now[0] += 300
    assert wm.maybe_save()
    assert orjson.loads((tmp_path / "w.json").read_bytes())["safe_until_ns"] == 99
    again = Watermarks(tmp_path / "w.json")
    again.load()
    assert again.start_for("sensor.a") == 99


def test_the_file_holds_only_marks_the_live_mark_does_not_cover(tmp_path: Path) -> None:
    wm = Watermarks(tmp_path / "w.json")
    entities = {f"sensor.s{i}": 1000 + i for i in range(500)}
    wm.track(live := batch(entities, 1499))
    wm.acknowledged(live)
    wm.track(old := batch({"sensor.backfilled": 5000}))  # a backfill batch: beyond the live mark
    wm.acknowledged(old)
    wm.save()
    assert orjson.loads((tmp_path / "w.json").read_bytes())["entities"] == {"sensor.backfilled": 5000}
    again = Watermarks(tmp_path / "w.json")
    again.load()
    assert {e: again.start_for(e) for e in entities} == {e: wm.start_for(e) for e in entities}
    assert again.start_for("sensor.backfilled") == 5000


def test_a_damaged_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(b"{not json")
    wm = Watermarks(path)
    wm.load()
    assert not wm.loaded
    assert wm.start_for("sensor.a") is None


@settings(deadline=None, max_examples=60)
@given(st.permutations(list(range(8))))
def test_any_acknowledgement_order_ends_with_every_mark(order: list[int]) -> None:
    wm = Watermarks(Path("/nonexistent/w.json"))
    batches = [batch({f"sensor.e{i % 3}": i * 10}, i * 10) for i in range(8)]
    for b in batches:
        wm.track(b)
    committed = []
    for index in order:
        wm.acknowledged(batches[index])
        committed.append(wm.safe_until_ns)
        # The live mark never passes a batch that is not acknowledged yet.
        pending = [i for i in range(8) if i not in order[: len(committed)]]
        if pending:
            assert wm.safe_until_ns is None or wm.safe_until_ns < min(pending) * 10
    assert wm.safe_until_ns == 70
