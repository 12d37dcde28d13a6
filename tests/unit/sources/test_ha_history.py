"""HA's history answers (compressed states) -> EntityState; requests; the window sizer."""

from __future__ import annotations

from datetime import UTC, datetime

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.model import iso_to_ns
from homeiq_daemon.sources.homeassistant import history


def test_request_asks_for_every_change_with_attributes_and_nothing_before_the_window() -> None:
    start = iso_to_ns("2024-03-01T10:00:00.250000+00:00")
    payload = history.request(["sensor.a"], start, start + 3_600_000_000_000)
    assert payload == {
        "start_time": "2024-03-01T10:00:00.250000+00:00",
        "end_time": "2024-03-01T11:00:00.250000+00:00",
        "entity_ids": ["sensor.a"],
        "include_start_time_state": False,
        "significant_changes_only": False,
        "minimal_response": False,
        "no_attributes": False,
    }
    assert "end_time" not in history.request(["sensor.a"], start, None)


def test_compressed_states_keep_their_microsecond_timestamps() -> None:
    updated = datetime(2024, 3, 1, 10, 0, 0, 123457, tzinfo=UTC)
    changed = datetime(2024, 3, 1, 9, 0, 0, 1, tzinfo=UTC)
    answer = {
        "sensor.a": [
            {"s": "1.5", "a": {"unit_of_measurement": "W"}, "lu": updated.timestamp(), "lc": changed.timestamp()},
            {"s": "2", "a": {}, "lu": updated.timestamp() + 1},  # lc left out: equal to lu
        ],
        "sensor.b": [{"s": 3, "lu": 1.0}, "junk", {"s": "x"}],  # malformed entries are skipped
    }
    states = list(history.parse_answer(answer))
    assert [(s.entity_id, s.state) for s in states] == [("sensor.a", "1.5"), ("sensor.a", "2")]
    assert states[0].last_updated_ns == iso_to_ns(updated.isoformat())
    assert states[0].last_changed == changed.isoformat()
    assert states[1].last_changed == states[1].last_updated
    assert states[0].attributes == {"unit_of_measurement": "W"}


def test_states_at_or_before_the_watermark_are_skipped() -> None:
    answer = {"sensor.a": [{"s": "1", "lu": 10.0}, {"s": "2", "lu": 11.0}]}
    states = list(history.parse_answer(answer, after_ns={"sensor.a": 10_000_000_000}))
    assert [s.state for s in states] == ["2"]
    assert list(history.parse_answer(["not", "a", "dict"])) == []


def test_window_sizer_keeps_answers_near_the_target() -> None:
    sizer = history.WindowSizer(window_s=3600, target_states=1000, min_s=1, max_s=86_400)
    sizer.observe(5000)  # five times the target: the next window holds about 0.8 of it at the same rate
    assert sizer.window_s == 3600 * 0.8 / 5
    sizer.observe(800)  # near the target: unchanged
    assert sizer.window_s == 3600 * 0.8 / 5
    sizer.observe(10)  # quiet: grows, at most 8x in one step
    assert sizer.window_s == 3600 * 0.8 / 5 * 8
    sizer.observe(1_000_000)  # a burst: at most 16x smaller in one step
    assert sizer.window_s == 3600 * 0.8 / 5 * 8 / 16
    sizer.observe(0)  # nothing: says nothing of the rate after it, so only twice as long
    assert sizer.window_s == 3600 * 0.8 / 5 * 8 / 16 * 2
    assert sizer.next_end(0, 10) == 10  # never past the end
    for _ in range(40):
        sizer.observe(0)
    assert sizer.window_s == 86_400
    for _ in range(40):
        sizer.observe(10**9)
    assert sizer.window_s == 1


def test_window_sizer_from_settings_is_capped_by_max_window() -> None:
    sizer = history.sizer_for(BackfillSettings(window_s=60, max_window_s=600))
    assert sizer.window_s == 60
    for _ in range(10):
        sizer.observe(0)
    assert sizer.window_s == 600
