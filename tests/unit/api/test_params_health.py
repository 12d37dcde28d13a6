"""API parameter parsing (bounded, 400 on nonsense), the /healthz rules, and InfluxQL escaping."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.api import params as apiparams
from homeiq_daemon.api.health import evaluate
from homeiq_daemon.api.params import BadRequest
from homeiq_daemon.errors import HistoryUnavailable
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.influx.query import (
    entity_history_query,
    influxql_identifier,
    influxql_string,
    parse_query_points,
)
from tests.support.hypo import examples

ALLOWED = frozenset({"domain", "limit", "cursor"})


def test_unknown_and_repeated_parameters_are_refused() -> None:
    with pytest.raises(BadRequest, match="unknown parameter"):
        apiparams.check_params([("domian", "x")], ALLOWED)
    with pytest.raises(BadRequest, match="more than once"):
        apiparams.check_params([("domain", "a"), ("domain", "b")], ALLOWED)
    assert apiparams.check_params([("domain", "a")], ALLOWED) == {"domain": "a"}


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "", " ", "\uff11\uff10", "1e3", "0x10", "9" * 41])
def test_bad_limits(raw: str) -> None:
    with pytest.raises(BadRequest):
        apiparams.limit({"limit": raw}, 1000)


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("100", 100), ("1000", 1000), ("1001", 1000),
                                               ("9" * 40, 1000), ("007", 7)])  # fmt: skip
def test_limits_are_clamped(raw: str, expected: int) -> None:
    assert apiparams.limit({"limit": raw}, 1000) == expected
    assert apiparams.limit({}, 1000) == 100
    assert apiparams.limit({}, 50) == 50


def _independent_cursor(key: str) -> str:
    """The cursor format: the key's UTF-8 bytes in URL-safe base64 (RFC 4648 section 5) without padding."""
    return base64.b64encode(key.encode(), altchars=b"-_").decode().rstrip("=")


@settings(max_examples=examples(200), deadline=timedelta(seconds=2))
@given(st.text(min_size=1, max_size=200))
def test_cursor_round_trip(key: str) -> None:
    encoded = apiparams.encode_cursor(key)
    assert encoded == _independent_cursor(key)
    acceptable = len(encoded) <= apiparams.MAX_CURSOR and not any(ord(c) < 32 or ord(c) == 127 for c in key)
    if acceptable:
        assert apiparams.cursor({"cursor": encoded}) == key
    else:
        with pytest.raises(BadRequest):
            apiparams.cursor({"cursor": encoded})


@settings(max_examples=examples(300), deadline=timedelta(seconds=2))
@given(st.one_of(st.text(max_size=60), st.text(min_size=1, max_size=40).map(_independent_cursor)))
def test_any_cursor_text_is_a_key_it_encodes_or_bad_request(raw: str) -> None:
    try:
        key = apiparams.cursor({"cursor": raw})
    except BadRequest:
        return
    assert key
    # What a cursor decodes to is a key whose own cursor it is (up to the padding base64 ignores).
    assert base64.urlsafe_b64decode(apiparams.encode_cursor(key) + "==") == base64.urlsafe_b64decode(raw + "==")
    assert not any(ord(c) < 32 or ord(c) == 127 for c in key)


@pytest.mark.parametrize("raw", ["", "a", "nodot", ".x", "x.", "a.b\nc", "a." + "b" * 300])
def test_bad_entity_ids(raw: str) -> None:
    with pytest.raises(BadRequest):
        apiparams.entity_id(raw)


def test_times() -> None:
    now = 1_700_000_000_000_000_000
    assert apiparams.time_ns({}, "start", 5, now) == 5
    assert apiparams.time_ns({"start": "now"}, "start", 5, now) == now
    assert apiparams.time_ns({"start": "1h"}, "start", 5, now) == now - 3600 * 10**9
    assert apiparams.time_ns({"start": "2024-03-01T00:00:00Z"}, "start", 5, now) == 1709251200 * 10**9
    assert apiparams.time_ns({"start": "2024-03-01T00:00:00"}, "start", 5, now) == 1709251200 * 10**9
    for bad in ("yesterday", "1y", "2024-13-01", "'; DROP TABLE x; --", "9" * 50):
        with pytest.raises(BadRequest):
            apiparams.time_ns({"start": bad}, "start", 5, now)


# --- health ---------------------------------------------------------------------------------------------------


def _stats(**changes: Any) -> Stats:
    stats = Stats()
    stats.hub_connected = True
    stats.hub_state = "connected"
    stats.sink_state = "up"
    stats.last_event_at = time.time()
    for key, value in changes.items():
        setattr(stats, key, value)
    return stats


def _status(stats: Stats, **kw: Any) -> tuple[str, int, list[str]]:
    report = evaluate(stats, time.time(), hub_configured=kw.pop("hub", True), spool_max_bytes=1000, **kw)
    return report.status, report.http_status, report.body["reasons"]


def test_health_ok() -> None:
    assert _status(_stats()) == ("ok", 200, [])
    assert _status(_stats(hub_connected=False, hub_state="disconnected"), hub=False)[0] == "ok"


def test_health_degraded_rules() -> None:
    now = time.time()
    assert _status(_stats(hub_connected=False, hub_state="connecting", hub_down_since=now - 10))[:2] == (
        "degraded", 503)  # fmt: skip
    assert _status(_stats(sink_state="down", sink_down_since=now - 10))[0] == "degraded"
    assert _status(_stats(spool_points=5, spool_bytes=10))[0] == "degraded"
    assert _status(_stats(last_event_at=now - 3600))[0] == "degraded"
    slow = _stats()
    slow.flush.add(6.0)
    assert _status(slow)[0] == "degraded"
    ticks = _stats()
    ticks.ticks.add(0.9)
    assert _status(ticks)[0] == "degraded"


def test_health_critical_rules() -> None:
    now = time.time()
    status, code, reasons = _status(_stats(hub_connected=False, hub_state="connecting", hub_down_since=now - 400))
    assert (status, code) == ("critical", 503)
    assert "unreachable" in reasons[0]
    assert _status(_stats(sink_state="down", sink_down_since=now - 400))[0] == "critical"
    assert _status(_stats(spool_bytes=950, spool_points=1))[0] == "critical"
    never = _stats(hub_connected=False, hub_state="connecting", started_at=now - 1000)
    assert _status(never)[0] == "critical"


def test_health_body_has_no_secrets_and_the_fields() -> None:
    body = evaluate(_stats(), time.time(), hub_configured=True, spool_max_bytes=1000).body
    for key in ("hub", "last_event_age_s", "sink", "spool", "flush", "ticks", "status", "reasons"):
        assert key in body


# --- InfluxQL ---------------------------------------------------------------------------------------------------


def test_influxql_literals() -> None:
    assert influxql_string("it's") == "'it\\'s'"
    assert influxql_string("a\\b") == "'a\\\\b'"
    assert influxql_string("a\nb") == "'a\\nb'"
    assert influxql_identifier('we"ird') == '"we\\"ird"'
    q = entity_history_query("sensor.x' OR '1'='1", 1, 2, 10)
    assert "\"entity_id\" = 'x\\' OR \\'1\\'=\\'1'" in q
    assert q.endswith("LIMIT 10")


def test_query_points_merge_series_in_time_order() -> None:
    payload = {"results": [{"statement_id": 0, "series": [
        {"name": "°C", "columns": ["time", "domain", "entity_id", "value", "friendly_name_str"],
         "values": [[30, "sensor", "t", 21.5, "T"], [10, "sensor", "t", 20.0, None]]},
        {"name": "sensor.t", "columns": ["time", "domain", "entity_id", "state"], "values": [[20, "sensor", "t", "x"]]},
    ]}]}  # fmt: skip
    points = parse_query_points(payload)
    assert [p["time_ns"] for p in points] == [10, 20, 30]
    assert points[2] == {"time_ns": 30, "measurement": "°C", "value": 21.5, "state": None,
                         "fields": {"friendly_name_str": "T"}}  # fmt: skip
    with pytest.raises(HistoryUnavailable):
        parse_query_points({"results": [{"statement_id": 0, "error": "boom"}]})
    with pytest.raises(HistoryUnavailable):
        parse_query_points(["not", "an", "object"])
