"""Rule matching: conditions, crossing, for_s holds, debounce, throttle, origins. A manual clock drives timers."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from homeiq_daemon.config.webhooks import WebhookSettings
from homeiq_daemon.metadata.registry import EntityPlace
from homeiq_daemon.model import EntityState, Origin, StateChange
from homeiq_daemon.webhooks.rules import Match, RuleEngine
from homeiq_daemon.webhooks.service import areas_from
from homeiq_daemon.webhooks.stats import WebhookStats


class ManualClock:
    """call_later on a virtual clock; ``advance`` runs due callbacks in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(callback)
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, handle = heapq.heappop(self._heap)
            self.now = when
            if not handle.cancelled:
                handle.callback()
        self.now = end


class _Handle:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def make_engine(*rules: dict[str, Any], area_of: Any = None) -> tuple[RuleEngine, list[Match], ManualClock]:
    settings = WebhookSettings.model_validate({"rules": [{"url": "http://127.0.0.1:9/hook", **rule} for rule in rules]})
    clock = ManualClock()
    fired: list[Match] = []
    engine = RuleEngine(
        settings,
        fired.append,
        clock.call_later,
        WebhookStats(),
        area_of=area_of,
        monotonic=lambda: clock.now,
        wall_ns=lambda: int(clock.now * 1e9),
    )
    return engine, fired, clock


class Feed:
    """Emits consecutive states of entities, each with its previous state as old_state."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine
        self.last: dict[str, EntityState] = {}
        self.tick = 0

    def __call__(self, entity_id: str, state: str | None, origin: Origin = "live", **attributes: Any) -> None:
        self.tick += 1
        new = (
            None
            if state is None
            else EntityState(entity_id, state, attributes, f"t{self.tick}", f"t{self.tick}", self.tick)
        )
        old = self.last.get(entity_id)
        if new is None:
            self.last.pop(entity_id, None)
        else:
            self.last[entity_id] = new
        self.engine.handle(StateChange(entity_id, new, old, origin), self.tick)


def test_to_fires_on_change_into_value_only() -> None:
    engine, fired, _ = make_engine({"name": "door", "entities": ["binary_sensor.door"], "to": "on"})
    feed = Feed(engine)
    feed("binary_sensor.door", "off")
    feed("binary_sensor.door", "on")
    feed("binary_sensor.door", "on", battery=50)  # attribute change only: not a new "to on"
    feed("binary_sensor.door", "off")
    feed("binary_sensor.door", "on")
    feed("binary_sensor.window", "on")  # not selected
    assert [m.change.new_state.state for m in fired if m.change.new_state] == ["on", "on"]
    assert all(m.rule == "door" and m.target == "door" for m in fired)


def test_from_and_to_together() -> None:
    engine, fired, _ = make_engine({"name": "r", "entities": ["lock.front"], "from": "locked", "to": ["unlocked"]})
    feed = Feed(engine)
    feed("lock.front", "locked")
    feed("lock.front", "jammed")
    feed("lock.front", "unlocked")  # from jammed: no
    feed("lock.front", "locked")
    feed("lock.front", "unlocked")  # from locked: yes
    assert len(fired) == 1
    assert fired[0].change.old_state is not None
    assert fired[0].change.old_state.state == "locked"


def test_numeric_fires_on_crossing_not_while_above() -> None:
    engine, fired, _ = make_engine({"name": "hot", "entities": ["sensor.t"], "above": 25})
    feed = Feed(engine)
    for value in ["20", "24.9", "25", "26", "30", "28", "24", "26", "unavailable", "27", "27.5"]:
        feed("sensor.t", value)
    assert [m.change.new_state.state for m in fired if m.change.new_state] == ["26", "26", "27"]


def test_numeric_range_and_attribute() -> None:
    engine, fired, _ = make_engine(
        {"name": "comfy", "entities": ["climate.*"], "attribute": "current_temperature", "above": 18, "below": 22}
    )
    feed = Feed(engine)
    feed("climate.living", "heat", current_temperature=17)
    feed("climate.living", "heat", current_temperature=19)  # into range
    feed("climate.living", "heat", current_temperature=21)
    feed("climate.living", "heat", current_temperature=23)  # out
    feed("climate.living", "heat", current_temperature=True)  # a bool is not a temperature
    feed("climate.living", "heat", current_temperature=20)  # in again
    feed("climate.kitchen", "off", current_temperature=20)  # a new entity (no old state): crossing
    assert [(m.change.entity_id, m.change.new_state.attributes["current_temperature"]) for m in fired] == [
        ("climate.living", 19),
        ("climate.living", 20),
        ("climate.kitchen", 20),
    ]


def test_attribute_changed_alone() -> None:
    engine, fired, _ = make_engine({"name": "vol", "domains": ["media_player"], "attribute": "volume_level"})
    feed = Feed(engine)
    feed("media_player.tv", "on", volume_level=0.3)  # first sight: the attribute appeared
    feed("media_player.tv", "playing", volume_level=0.3)  # state changed, attribute did not
    feed("media_player.tv", "playing", volume_level=0.5)
    assert len(fired) == 2


def test_for_holds_and_cancels() -> None:
    engine, fired, clock = make_engine({"name": "open", "entities": ["binary_sensor.door"], "to": "on", "for_s": 30})
    feed = Feed(engine)
    feed("binary_sensor.door", "off")
    feed("binary_sensor.door", "on")
    clock.advance(29)
    feed("binary_sensor.door", "on", battery=10)  # still on: the hold continues
    assert fired == []
    clock.advance(2)
    assert len(fired) == 1
    assert fired[0].fired_ns == int(1030 * 1e9)  # the hold began at 1000 s
    # Broken before the time: nothing.
    feed("binary_sensor.door", "off")
    feed("binary_sensor.door", "on")
    clock.advance(10)
    feed("binary_sensor.door", "off")
    clock.advance(60)
    assert len(fired) == 1
    assert engine.pending_holds == 0


def test_for_on_numeric_keeps_hold_while_in_range() -> None:
    engine, fired, clock = make_engine({"name": "hot", "entities": ["sensor.t"], "above": 25, "for_s": 60})
    feed = Feed(engine)
    feed("sensor.t", "20")
    feed("sensor.t", "26")
    clock.advance(30)
    feed("sensor.t", "27")
    clock.advance(31)
    assert len(fired) == 1
    assert fired[0].change.new_state is not None
    assert fired[0].change.new_state.state == "26"


def test_gapfill_and_snapshot_never_start_but_can_cancel() -> None:
    engine, fired, clock = make_engine(
        {"name": "open", "entities": ["binary_sensor.door"], "to": "on", "for_s": 30},
        {"name": "now", "entities": ["binary_sensor.door"], "to": "on"},
    )
    feed = Feed(engine)
    feed("binary_sensor.door", "off", origin="snapshot")
    feed("binary_sensor.door", "on", origin="snapshot")
    feed("binary_sensor.door", "off", origin="gapfill")
    feed("binary_sensor.door", "on", origin="gapfill")
    clock.advance(100)
    assert fired == []
    feed("binary_sensor.door", "off")
    feed("binary_sensor.door", "on")  # live: "now" fires, "open" starts its hold
    assert [m.rule for m in fired] == ["now"]
    feed("binary_sensor.door", "off", origin="gapfill")  # the gap shows the door closed: the hold ends
    clock.advance(100)
    assert [m.rule for m in fired] == ["now"]


def test_entity_removed_cancels_hold() -> None:
    engine, fired, clock = make_engine({"name": "open", "entities": ["binary_sensor.door"], "to": "on", "for_s": 5})
    feed = Feed(engine)
    feed("binary_sensor.door", "on")
    feed("binary_sensor.door", None)
    clock.advance(10)
    assert fired == []


def test_throttle_per_entity() -> None:
    engine, fired, clock = make_engine({"name": "motion", "domains": ["binary_sensor"], "to": "on", "throttle_s": 60})
    feed = Feed(engine)
    for _ in range(3):
        feed("binary_sensor.a", "off")
        feed("binary_sensor.a", "on")
        feed("binary_sensor.b", "off")
        feed("binary_sensor.b", "on")
        clock.advance(10)
    assert [m.change.entity_id for m in fired] == ["binary_sensor.a", "binary_sensor.b"]
    assert engine.stats.throttled["motion"] == 4
    clock.advance(60)
    feed("binary_sensor.a", "off")
    feed("binary_sensor.a", "on")
    assert len(fired) == 3


def test_debounce_fires_latest_after_quiet() -> None:
    engine, fired, clock = make_engine({"name": "power", "entities": ["sensor.p"], "debounce_s": 5})
    feed = Feed(engine)
    for value in ["1", "2", "3", "4"]:
        feed("sensor.p", value)
        clock.advance(1)
    assert fired == []
    clock.advance(5)
    assert len(fired) == 1
    assert fired[0].change.new_state is not None
    assert fired[0].change.new_state.state == "4"


def test_areas_via_lookup_and_disabled_rules() -> None:
    areas = {"light.desk": {"office", "büro"}, "light.bed": {"bedroom"}}
    engine, fired, _ = make_engine(
        {"name": "office", "areas": ["Office"], "to": "on"},
        {"name": "off", "entities": ["light.desk"], "to": "on", "enabled": False},
        area_of=lambda entity_id: areas.get(entity_id, ()),
    )
    feed = Feed(engine)
    feed("light.desk", "on")
    feed("light.bed", "on")
    assert [(m.rule, m.change.entity_id) for m in fired] == [("office", "light.desk")]


@pytest.mark.parametrize(
    ("states", "expected"),
    [(["off", "on"], 1), (["on"], 1), (["unavailable", "on", "on"], 1), (["on", "off", "on"], 2)],
)
def test_to_counts(states: list[str], expected: int) -> None:
    engine, fired, _ = make_engine({"name": "r", "entities": ["switch.x"], "to": "on"})
    feed = Feed(engine)
    for state in states:
        feed("switch.x", state)
    assert len(fired) == expected


def test_close_cancels_pending() -> None:
    engine, fired, clock = make_engine({"name": "r", "entities": ["switch.x"], "to": "on", "for_s": 1})
    feed = Feed(engine)
    feed("switch.x", "on")
    engine.close()
    clock.advance(5)
    assert fired == []
    assert engine.pending_holds == 0


def test_areas_from_registry_places_follow_resyncs() -> None:
    sync = SimpleNamespace(places={"light.desk": EntityPlace("office_2", "Home Office", None, None, None, None)})
    engine, fired, _ = make_engine({"name": "r", "areas": ["home office"], "to": "on"}, area_of=areas_from(sync))
    feed = Feed(engine)
    feed("light.desk", "on")
    sync.places = {}  # the registry sync replaced its table: the light left every area
    feed("light.desk", "off")
    feed("light.desk", "on")
    sync.places = {"light.desk": EntityPlace("office_2", None, None, None, None, None)}
    feed("light.desk", "off")
    feed("light.desk", "on")
    assert len(fired) == 1
    engine2, fired2, _ = make_engine({"name": "r", "areas": ["Office_2"], "to": "on"}, area_of=areas_from(sync))
    Feed(engine2)("light.desk", "on")
    assert len(fired2) == 1
