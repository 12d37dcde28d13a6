"""Rule matching as a property: random sequences of changes (values, removals, snapshot/gapfill origins,
time passing) through the engine agree with a reference written from the documented semantics
(webhooks/rules.py docstring, docs/webhooks.md): to/from fire on a change into ``to`` out of ``from``; above/
below fire on crossing into the range; neither fires on any change of the watched value; snapshot and gapfill
never fire; ``throttle_s`` allows one delivery per entity per window.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.model import Origin
from tests.support.hypo import examples
from tests.unit.webhooks.test_rules import Feed, make_engine

VALUES = ["on", "off", "12", "3.5", "-1", "nan", "abc", "100"]
ENTITIES = ["binary_sensor.a", "binary_sensor.b"]
Step = tuple[str, str | None, Origin, float]  # entity, new value (None: removed), origin, seconds before it


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def reference(rule: dict[str, Any], steps: list[Step]) -> list[tuple[str, str]]:
    """(entity, value) of every delivery the documented semantics give for ``steps``."""
    last: dict[str, str | None] = {}
    last_fired: dict[str, float] = {}
    now = 0.0
    out: list[tuple[str, str]] = []
    above, below = rule.get("above"), rule.get("below")

    def in_range(value: str | None) -> bool:
        number = _number(value)
        return number is not None and (above is None or number > above) and (below is None or number < below)

    for entity, value, origin, wait in steps:
        now += wait
        old = last.get(entity)
        last[entity] = value
        if value is None or origin in ("snapshot", "gapfill"):
            continue
        if above is not None or below is not None:
            fires = in_range(value) and not in_range(old)
        else:
            fires = old != value
            if "to" in rule:
                fires = fires and value in rule["to"]
            if "from" in rule:
                fires = fires and old is not None and old in rule["from"]
        if not fires:
            continue
        throttle = rule.get("throttle_s", 0.0)
        if throttle and entity in last_fired and now - last_fired[entity] < throttle:
            continue
        last_fired[entity] = now
        out.append((entity, value))
    return out


rules = st.one_of(
    st.fixed_dictionaries({"to": st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True)},
                          optional={"from": st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True)}),
    st.fixed_dictionaries({}, optional={"above": st.sampled_from([0.0, 5.0]), "below": st.sampled_from([20.0, 50.0])}
                          ).filter(bool),
    st.just({}),
).flatmap(lambda r: st.fixed_dictionaries({}, optional={"throttle_s": st.sampled_from([1.0, 5.0])}).map(
    lambda t: {**r, **t}))
steps = st.lists(st.tuples(st.sampled_from(ENTITIES), st.one_of(st.none(), st.sampled_from(VALUES)),
                           st.sampled_from(["live", "live", "live", "replay", "snapshot", "gapfill"]),
                           st.sampled_from([0.0, 0.5, 2.0, 6.0])), max_size=30)


@given(rules, steps)
@settings(max_examples=examples(300), deadline=None)
def test_the_engine_fires_as_documented(rule: dict[str, Any], sequence: list[Step]) -> None:
    engine, fired, clock = make_engine({"name": "r", "domains": ["binary_sensor"], **rule})
    feed = Feed(engine)
    for entity, value, origin, wait in sequence:
        clock.advance(wait)
        feed(entity, value, origin)
    got = [(m.change.entity_id, m.change.new_state.state if m.change.new_state else None) for m in fired]
    assert got == reference(rule, sequence), rule
    assert all(m.rule == "r" for m in fired)
