"""Our state -> point mapping against Home Assistant's own InfluxDB integration, run for real.

HA's ``event_to_json`` (homeassistant/components/influxdb/__init__.py, 2024.3.3) runs in HA's venv as a
subprocess; hypothesis feeds both the same states and configs. Points must agree on measurement, tags and
fields — except where we deliberately differ: we drop NaN/infinite ``value`` fields (HA would send them and
InfluxDB would reject the line) and we rename ``time`` keys (InfluxDB drops such points).
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.sources.homeassistant.messages import parse_state
from tests.support import oracle as input_oracle
from tests.support.lineproto import parse_line
from tests.support.pointcheck import write_recording
from tests.support.recording import generate_events

pytestmark = pytest.mark.ha
ROOT = Path(__file__).resolve().parents[2]


class Oracle:
    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, str(ROOT / "tests/support/ha_influx_oracle.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def ask(self, config: dict[str, Any], states: list[dict[str, Any]]) -> list[Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps({"config": config, "states": states}).decode() + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the Home Assistant oracle died"
        return list(orjson.loads(line))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    if os.environ.get("HOMEIQ_SKIP_HA") == "1":
        pytest.skip("HOMEIQ_SKIP_HA=1: real Home Assistant tests skipped on request")
    venv = subprocess.run([str(ROOT / "scripts/ensure-ha.sh")], check=True, capture_output=True, text=True,
                          timeout=1800).stdout.strip().splitlines()[-1]
    o = Oracle(f"{venv}/bin/python")
    try:
        yield o
    finally:
        o.close()


# --- strategies -----------------------------------------------------------------------------------------

domains = st.sampled_from(["sensor", "binary_sensor", "light", "switch", "climate", "person", "sun", "cover",
                           "weather", "input_number"])
object_ids = st.one_of(
    st.from_regex(r"[a-z0-9]{1,3}(_[a-z0-9]{1,4}){0,2}", fullmatch=True),
    st.sampled_from(["Upper", "a__b", "_x", "x_", "dash-ed", "sp ace"]),  # ids HA's State refuses
)
states = st.one_of(
    st.text(min_size=256, max_size=300),  # longer than HA's 255-character limit

    st.sampled_from(["on", "off", "home", "not_home", "open", "closed", "locked", "unlocked", "above_horizon",
                     "below_horizon", "unknown", "unavailable", "", "heat", "playing", "nan", "inf", "-inf",
                     "1e3", " 12 ", "1_000", "0x10"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.text(max_size=12),
)
attr_keys = st.one_of(
    st.sampled_from(["unit_of_measurement", "device_class", "friendly_name", "value", "state", "brightness",
                     "state_class", "temperature", "hs_color", "value_", "x_str", "time"]),
    st.from_regex(r"[a-z]{1,6}", fullmatch=True),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["12.5 W", "v1.2.3", "abc", "42", "3.14", "nan", "inf", "°C", "kWh", "%", "", "1,5", "a1b2"]),
    st.text(max_size=10),
)
attr_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3),
                        st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))


@st.composite
def ha_states(draw: st.DrawFn) -> dict[str, Any]:
    entity_id = f"{draw(domains)}.{draw(object_ids)}"
    attributes = draw(st.dictionaries(attr_keys, attr_values, max_size=6))
    return {"entity_id": entity_id, "state": draw(states), "attributes": attributes,
            "last_changed": "2026-11-20T12:00:00.123456+00:00", "last_updated": "2026-11-20T12:00:00.123456+00:00"}


names = st.sampled_from(["units", "°C", "default", "ha", "entity"])
configs = st.fixed_dictionaries({}, optional={
    "measurement_attr": st.sampled_from(["unit_of_measurement", "domain__device_class", "entity_id"]),
    "default_measurement": names,
    "override_measurement": names,
    "tags": st.dictionaries(st.sampled_from(["instance", "site"]), st.sampled_from(["pi", "home"]), max_size=2),
    "tags_attributes": st.lists(st.sampled_from(["friendly_name", "device_class", "state_class", "brightness"]),
                                max_size=2, unique=True),
    "ignore_attributes": st.lists(st.sampled_from(["friendly_name", "hs_color", "value", "unit_of_measurement"]),
                                  max_size=2, unique=True),
    "include": st.fixed_dictionaries({}, optional={
        "domains": st.lists(domains, max_size=2, unique=True),
        "entity_globs": st.lists(st.sampled_from(["sensor.*", "*_a*", "light.?"]), max_size=2, unique=True)}),
    "exclude": st.fixed_dictionaries({}, optional={
        "domains": st.lists(domains, max_size=2, unique=True),
        "entity_globs": st.lists(st.sampled_from(["sensor.a*", "*_1*"]), max_size=2, unique=True)}),
})


def _ha_config(options: dict[str, Any]) -> dict[str, Any]:
    conf = dict(options)
    for side in ("include", "exclude"):
        if side in conf and "entity_globs" not in conf[side] and "domains" not in conf[side]:
            del conf[side]
    return conf


def _without_deliberate_differences(theirs: dict[str, Any] | None) -> dict[str, Any] | None:
    if theirs is None:
        return None
    fields = {k: v for k, v in theirs["fields"].items()
              if not (isinstance(v, dict) and "__float__" in v)}  # non-finite: we drop, HA sends (and fails)
    if not fields:
        return None
    return {**theirs, "fields": fields}


def _name(text: str, separators: str) -> str:
    """A name as the encoder's docs say it is written (sinks/lpnames.py), spelled out here character by
    character: a control character, U+FFFD itself, and a backslash that ends the name or stands before a
    separator or a double quote each become U+FFFD + the code point in upper-case hex + ``;``."""
    out = []
    for i, char in enumerate(text):
        after = text[i + 1] if i + 1 < len(text) else None
        bad = (ord(char) < 0x20 or char in "\x7f\ufffd"
               or (char == "\\" and (after is None or after in separators or after == '"')))
        out.append(f"\ufffd{ord(char):X};" if bad else char)
    return "".join(out)


def _key(name: str) -> str:
    """A tag or field key: ``time``, ``time_``, ... get one more underscore (InfluxDB drops a key ``time``)."""
    name = _name(name, ",= ")
    return name + "_" if name.startswith("time") and set(name[4:]) <= {"_"} else name


def _as_written(theirs: dict[str, Any] | None) -> dict[str, Any] | None:
    """HA's point as the daemon writes it (the documented differences): keys named ``time`` renamed, names
    escaped where line protocol cannot carry a character, and a tag with an empty key or value left out
    (InfluxDB refuses the line)."""
    point = _without_deliberate_differences(theirs)
    if point is None:
        return None
    measurement = _name(point["measurement"], ", ")
    if measurement.startswith("#"):
        measurement = "\ufffd23;" + measurement[1:]
    return {"measurement": measurement,
            "tags": {_key(k): _name(v, ",= ") for k, v in point["tags"].items() if k != "" and v != ""},
            "fields": {_key(k): v for k, v in point["fields"].items() if k != ""}}


def _line_written(mapper: PointMapper, raw: dict[str, Any]) -> dict[str, Any] | None:
    """The line the daemon's hot path writes for ``raw``, read back with the tests' own parser."""
    line = mapper.map_line(parse_state(raw))
    if line is None:
        return None
    point = parse_line(line)
    return {"measurement": point.measurement, "tags": point.tags, "fields": point.fields}


@given(config=configs, batch=st.lists(ha_states(), min_size=1, max_size=25))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
def test_mapping_matches_home_assistant(oracle: Oracle, config: dict[str, Any],
                                        batch: list[dict[str, Any]]) -> None:
    mapper = PointMapper(MappingSettings(**config))
    answers = oracle.ask(_ha_config(config), batch)
    for raw, theirs in zip(batch, answers, strict=True):
        if isinstance(theirs, dict) and "refused" in theirs:
            # HA would never emit this state (an id its State refuses, a state over 255 characters), but a
            # replay file or another source can carry it: the daemon maps it by the same rules, not dropping
            # it and not failing.
            theirs = theirs["point"]
        assert _line_written(mapper, raw) == _as_written(theirs), f"line for state={raw!r}"


def test_known_state_against_home_assistant(oracle: Oracle) -> None:
    raw = {"entity_id": "sensor.power", "state": "1234.5", "last_updated": "2026-11-20T12:00:00+00:00",
           "attributes": {"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Power",
                          "reading": "12.5 W", "ok": True, "n": None, "value": 3}}
    [theirs] = oracle.ask({}, [raw])
    assert theirs == {"measurement": "W", "tags": {"domain": "sensor", "entity_id": "power"},
                      "fields": {"value": 1234.5, "device_class_str": "power", "friendly_name_str": "Power",
                                 "reading_str": "12.5 W", "reading": 12.5, "ok": 1.0, "n_str": "None",
                                 "value_": 3.0}}
    assert _line_written(PointMapper(MappingSettings()), raw) == theirs
    assert not math.isnan(theirs["fields"]["value"])


def _oracle_point(raw: dict[str, Any]) -> dict[str, Any] | None:
    point = input_oracle.ha_point(raw)
    if point is None:
        return None
    (measurement, tags, _), fields = point
    return {"measurement": measurement, "tags": dict(tags), "fields": fields}


def test_the_nothing_lost_oracle_maps_as_home_assistant_does(oracle: Oracle, tmp_path: Path) -> None:
    """tests/support/oracle.py, the independent expectation of the outage and shutdown tests, against HA's own
    event_to_json (default options) on every state of a realistic recording."""
    messages = generate_events(3000, rate_per_s=100.0, seed=3)
    states = input_oracle.replay_states(write_recording(tmp_path / "r.jsonl", messages))
    assert len(states) == 3000
    answers = oracle.ask({}, states)
    for raw, theirs in zip(states, answers, strict=True):
        assert _oracle_point(raw) == _as_written(theirs), f"state={raw!r}"


@given(batch=st.lists(ha_states(), min_size=1, max_size=25))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
def test_the_nothing_lost_oracle_on_generated_states(oracle: Oracle, batch: list[dict[str, Any]]) -> None:
    for raw, theirs in zip(batch, oracle.ask({}, batch), strict=True):
        if isinstance(theirs, dict) and "refused" in theirs:
            theirs = theirs["point"]
        assert _oracle_point(raw) == _as_written(theirs), f"state={raw!r}"
