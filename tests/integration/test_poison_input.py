"""Poison input never kills the daemon or loops it: timestamps no sink can store, batches the embedded store
refuses (a failing row, a corrupt page), odd Home Assistant frames, a state the mapping chokes on, a wall
clock that jumps ahead. Each is dropped and counted (or set aside in the dead-letter directory) while
everything else already accepted reaches the store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from homeiq_daemon.app import App
from homeiq_daemon.delivery.spool import Spool
from homeiq_daemon.model import iso_to_ns
from homeiq_daemon.sinks import embedded
from homeiq_daemon.sinks.embedded import MIGRATIONS, HistoryStore, read_history
from tests.support.daemon import daemon_settings, running_app, wait_for
from tests.support.fake_ha import FakeHomeAssistant, make_state

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _t(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def _frame(entity_id: str, state: str, last_updated: str, **attributes: Any) -> bytes:
    new_state = make_state(entity_id, state, attributes, last_updated)
    event = {"event_type": "state_changed", "data": {"entity_id": entity_id, "new_state": new_state}}
    return orjson.dumps({"id": 1, "type": "event", "event": event})


def _history(state_dir: Path, entity_id: str) -> list[tuple[int, float | None]]:
    return [(r.time_ns, r.value) for r in read_history(state_dir / "history.db", entity_id, -(2**63), 2**63 - 1)]


def _dead_letters(state_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted((state_dir / "deadletter").glob("*.lp")))


# Every shape of timestamp HA or a file can carry; the storable ones are kept, the others dropped and counted.
TIMESTAMPS = [
    ("9999-12-31T23:59:59.999999+00:00", False),
    ("0001-01-01T00:00:00+00:00", False),
    ("9999-12-31T23:59:59-14:00", False),
    ("2262-04-12T00:00:00+00:00", False),
    ("1677-09-21T00:00:00+00:00", False),
    ("2262-04-11T23:47:16+00:00", True),
    ("1677-09-22T00:00:00+00:00", True),
    ("1970-01-01T00:00:00+00:00", True),
    ("2026-11-20T12:00:00", True),  # no offset: UTC
    ("2026-11-20T13:00:00.5+01:00", True),
    ("2026-11-20T12:00:00.123456789+00:00", True),  # nanoseconds: read to the microsecond
    ("20261120T120000Z", True),
    ("2026-11-20T12:00:00+25:00", False),  # not an offset
    ("yesterday", False),
    ("2026-11-20", True),
]


async def test_every_timestamp_is_stored_or_dropped_and_counted(tmp_path: Path) -> None:
    replay = tmp_path / "times.jsonl"
    lines = [_frame("sensor.before", "1", _t(0))]
    for i, (stamp, _) in enumerate(TIMESTAMPS):
        lines.append(_frame(f"sensor.t{i}", str(i), stamp))
    lines.append(_frame("sensor.after", "2", _t(1)))
    replay.write_bytes(b"\n".join(lines) + b"\n")
    state = tmp_path / "state"
    app = App(daemon_settings(state, replay={"path": replay}), exit_when_sources_done=True)
    await app.run()  # returns: the writer never died
    kept = [i for i, (_, ok) in enumerate(TIMESTAMPS) if ok]
    for i, (stamp, ok) in enumerate(TIMESTAMPS):
        assert len(_history(state, f"sensor.t{i}")) == (1 if ok else 0), stamp
    assert _history(state, "sensor.before") == [(iso_to_ns(_t(0)), 1.0)]
    assert _history(state, "sensor.after") == [(iso_to_ns(_t(1)), 2.0)]
    assert app.stats.malformed_messages["replay"] == len(TIMESTAMPS) - len(kept)


async def test_a_poison_line_in_the_spool_is_set_aside_once_not_at_every_start(tmp_path: Path) -> None:
    """A spool written before the range check (a year-9999 point) used to crash the writer at every start."""
    state = tmp_path / "state"
    spool = Spool(state / "spool", max_bytes=64 << 20, segment_bytes=8 << 20)
    spool.append(b"m,domain=sensor,entity_id=good1 value=1 1000000000\n", 1)
    spool.append(b"m,domain=sensor,entity_id=bad value=2 253402300799000000000\n"
                 b"m,domain=sensor,entity_id=good2 value=3 2000000000\n", 2)
    spool.append(b"m,domain=sensor,entity_id=good3 value=4 3000000000\n", 1)
    spool.close()
    async with running_app(daemon_settings(state)) as (app, task):
        await wait_for(lambda: (app.stats.spool_records == 0 and app.stats.points_written >= 3) or task.done())
        assert not task.done()
    assert app.stats.points_dropped["rejected"] == 1
    async with running_app(daemon_settings(state)) as (again, task):  # the next start: nothing to choke on
        assert again.stats.spool_records == 0
        assert not task.done()
    assert again.stats.points_written == 0
    assert [_history(state, f"sensor.good{i}") for i in (1, 2, 3)] == [[(10**9, 1.0)], [(2 * 10**9, 3.0)],
                                                                        [(3 * 10**9, 4.0)]]
    assert _history(state, "sensor.bad") == []
    assert "entity_id=bad value=2 253402300799000000000" in _dead_letters(state)


def _poisoned_history_db(state: Path, entity: str) -> None:
    """A history.db whose inserts for one entity fail inside SQLite (an integrity error), as a store that
    cannot take a row would."""
    state.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state / "history.db", isolation_level=None)
    conn.executescript(f"BEGIN;\n{MIGRATIONS[0]}\nPRAGMA user_version=1;\nCOMMIT;")
    conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON points WHEN NEW.entity_id = '{entity}' "
                 "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.close()


async def test_rows_the_history_store_refuses_are_dead_lettered_and_the_writer_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _poisoned_history_db(state, "sensor.refused")
    replay = tmp_path / "r.jsonl"
    frames = [_frame("sensor.refused" if i % 7 == 3 else f"sensor.ok{i}", str(i), _t(i)) for i in range(50)]
    replay.write_bytes(b"\n".join(frames) + b"\n")
    app = App(daemon_settings(state, replay={"path": replay}), exit_when_sources_done=True)
    await app.run()
    refused = sum(1 for i in range(50) if i % 7 == 3)
    for i in range(50):
        if i % 7 != 3:
            assert _history(state, f"sensor.ok{i}") == [(iso_to_ns(_t(i)), float(i))]
    assert app.stats.points_dropped["rejected"] == refused
    assert _dead_letters(state).count("entity_id=refused") == refused


async def test_a_corrupt_history_page_sets_the_batch_aside_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = HistoryStore(state / "history.db", retention_days=30)
    state.mkdir(parents=True)
    await store.start()
    body = b"".join(f"m,domain=sensor,entity_id=e{i} value={i} {i + 1}\n".encode() for i in range(3000))
    await store.write(body, 3000)
    await store.close()
    raw = bytearray((state / "history.db").read_bytes())
    page = 4096
    for offset in range(2 * page, len(raw) - page, page):  # every page after the schema: garbage
        raw[offset:offset + page] = b"\xa5" * page
    (state / "history.db").write_bytes(bytes(raw))
    (state / "history.db-wal").unlink(missing_ok=True)
    replay = tmp_path / "r.jsonl"
    replay.write_bytes(b"\n".join(_frame(f"sensor.x{i}", "1", _t(i)) for i in range(20)) + b"\n")
    app = App(daemon_settings(state, replay={"path": replay}), exit_when_sources_done=True)
    await app.run()  # no crash: the batches are set aside
    assert app.stats.points_dropped["poison"] == 20
    assert _dead_letters(state).count("entity_id=x") == 20


# --- Home Assistant frames ------------------------------------------------------------------------------


@pytest.fixture
async def fake_ha() -> AsyncIterator[FakeHomeAssistant]:
    ha = FakeHomeAssistant()
    ha.set_state("sensor.temp", "20.5", {"unit_of_measurement": "°C"}, _t(0), notify=False)
    await ha.start()
    try:
        yield ha
    finally:
        await ha.stop()


def _ha_settings(state: Path, ha: FakeHomeAssistant) -> Any:
    return daemon_settings(state, home_assistant={"url": ha.url, "token": ha.token, "reconnect_initial_s": 0.05,
                                                  "reconnect_max_s": 0.2, "connect_timeout_s": 2})


@pytest.mark.parametrize("reply", ["[]", "[{}, {}]", "{}", '{"type": null}', "[1]", "null", '"auth_ok"'])
async def test_an_odd_auth_reply_is_a_protocol_error_and_a_reconnect(tmp_path: Path, fake_ha: FakeHomeAssistant,
                                                                     reply: str) -> None:
    fake_ha.auth_reply_raw = reply
    async with running_app(_ha_settings(tmp_path, fake_ha), ready=False) as (app, task):
        await wait_for(lambda: fake_ha.connections >= 3 or task.done())
        assert not task.done(), "the daemon stopped on an odd handshake frame"
        fake_ha.auth_reply_raw = None
        await wait_for(lambda: app.stats.hub_connected or task.done())
        await wait_for(lambda: _history(tmp_path, "sensor.temp") or task.done())
        assert not task.done()
    assert _history(tmp_path, "sensor.temp") == [(iso_to_ns(_t(0)), 20.5)]


@pytest.mark.parametrize("error", ["boom", None, 7, [], {"code": 1}])
async def test_a_failed_result_with_any_error_shape_is_handled(tmp_path: Path, fake_ha: FakeHomeAssistant,
                                                               error: object) -> None:
    fake_ha.result_overrides["supported_features"] = {"success": False, "error": error}
    async with running_app(_ha_settings(tmp_path, fake_ha)) as (app, task):
        await wait_for(lambda: app.stats.hub_connected or task.done())
        fake_ha.set_state("sensor.temp", "21.0", {"unit_of_measurement": "°C"}, _t(5))
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 2 or task.done())
        assert not task.done()
        assert fake_ha.connections == 1


async def test_one_odd_entity_never_stops_the_reader(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    async with running_app(_ha_settings(tmp_path, fake_ha)) as (app, task):
        await wait_for(lambda: app.stats.hub_connected)
        sub_id = next(c["id"] for c in fake_ha.commands if c.get("event_type") == "state_changed")
        # Valid JSON nested deeper than Python's repr goes: the mapping raises RecursionError on it.
        odd = orjson.dumps(make_state("sensor.odd", "1", {"nested": "DEEP"}, _t(3))).decode()
        odd = odd.replace('"DEEP"', "[" * 1000 + "]" * 1000)
        await fake_ha.send_raw(f'{{"id": {sub_id}, "type": "event", "event": {{"event_type": "state_changed", '
                               f'"data": {{"entity_id": "sensor.odd", "new_state": {odd}}}}}}}')
        fake_ha.set_state("sensor.temp", "22.0", {"unit_of_measurement": "°C"}, _t(4))
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 2 or task.done())
        assert not task.done()
        assert fake_ha.connections == 1
        assert app.stats.events_skipped["mapping_failed"] == 1


# --- retention and the wall clock ----------------------------------------------------------------------


async def test_a_forward_clock_jump_does_not_empty_the_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    store = HistoryStore(tmp_path / "history.db", retention_days=30)
    await store.start()
    try:
        await _clock_jump(store, monkeypatch)
    finally:
        await store.close()


async def _clock_jump(store: HistoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    now_ns = iso_to_ns(_t(0))
    day = 86_400 * 10**9
    # 599 points over the last 12 days, and one 40 days old (the only one retention may delete).
    body = b"".join(f"m,domain=sensor,entity_id=e value={i} {now_ns - i * (12 * day // 599)}\n".encode()
                    for i in range(599)) + f"m,domain=sensor,entity_id=e value=-1 {now_ns - 40 * day}\n".encode()
    await store.write(body, 600)
    monkeypatch.setattr(embedded, "time", SimpleNamespace(time_ns=lambda: now_ns + 60 * day))  # clock +60 days
    assert await store.apply_retention() == 1
    assert await store.apply_retention() == 0
    rows = await store.query("sensor.e", -(2**63), 2**63 - 1, limit=10_000)
    assert len(rows) == 599
    # 20 days later for real, with new data: retention deletes what is older than 30 days before it.
    monkeypatch.setattr(embedded, "time", SimpleNamespace(time_ns=lambda: now_ns + 20 * day))
    await store.write(f"m,domain=sensor,entity_id=e value=7 {now_ns + 20 * day}\n".encode(), 1)
    assert await store.apply_retention() == sum(1 for i in range(599) if i * (12 * day // 599) > 10 * day)
