"""The Home Assistant source against the protocol-exact fake: snapshot, live events, reconnect + gap fill,
malformed frames, heartbeat, rejected token, large frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from homeiq_daemon.app import App
from homeiq_daemon.errors import AuthError, ConfigError
from homeiq_daemon.model import iso_to_ns
from homeiq_daemon.sinks.embedded import read_history
from tests.support.daemon import daemon_settings, running_app, wait_for
from tests.support.fake_ha import FakeHomeAssistant, make_state


def _t(seconds: float) -> str:
    return (datetime(2026, 11, 20, 12, 0, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
async def fake_ha() -> AsyncIterator[FakeHomeAssistant]:
    ha = FakeHomeAssistant()
    ha.set_state("sensor.temp", "20.5", {"unit_of_measurement": "°C"}, _t(0), notify=False)
    ha.set_state("switch.plug", "on", {}, _t(1), notify=False)
    await ha.start()
    try:
        yield ha
    finally:
        await ha.stop()


def _history(state_dir: Path, entity_id: str) -> list[tuple[int, float | None, str | None]]:
    rows = read_history(state_dir / "history.db", entity_id, 0, 2**62)
    return [(r.time_ns, r.value, r.state) for r in rows]


def _settings(tmp_path: Path, ha: FakeHomeAssistant, **ha_overrides: object):  # type: ignore[no-untyped-def]
    return daemon_settings(tmp_path, home_assistant={"url": ha.url, "token": ha.token, "reconnect_initial_s": 0.1,
                                                   "reconnect_max_s": 0.5, **ha_overrides})


async def test_snapshot_then_live_events(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        await wait_for(lambda: app.stats.hub_connected)
        fake_ha.set_state("sensor.temp", "21.0", {"unit_of_measurement": "°C"}, _t(10))
        fake_ha.set_state("sensor.temp", "21.5", {"unit_of_measurement": "°C"}, _t(11))
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 3)
        # One connection, its message ids starting at 1 and strictly increasing (checked while it is open).
        assert len(fake_ha.clients) == 1
        ids = fake_ha.clients[0].ids
        assert ids[0] == 1
        assert ids == sorted(set(ids))
    assert _history(tmp_path, "sensor.temp") == [
        (iso_to_ns(_t(0)), 20.5, None), (iso_to_ns(_t(10)), 21.0, None), (iso_to_ns(_t(11)), 21.5, None)]
    assert _history(tmp_path, "switch.plug") == [(iso_to_ns(_t(1)), 1.0, "on")]
    assert fake_ha.protocol_violations == []


async def test_reconnect_fills_the_gap_without_duplicates(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        await wait_for(lambda: app.stats.hub_connected)
        await fake_ha.drop_connections()
        # While we are away: one entity changes twice (only the last state survives in HA), one does not.
        fake_ha.set_state("sensor.temp", "25.0", {"unit_of_measurement": "°C"}, _t(30), notify=False)
        fake_ha.set_state("sensor.temp", "26.0", {"unit_of_measurement": "°C"}, _t(31), notify=False)
        await wait_for(lambda: fake_ha.connections >= 2 and app.stats.hub_connected)
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 2)
        # Live events continue on the new connection.
        fake_ha.set_state("switch.plug", "off", {}, _t(40))
        await wait_for(lambda: len(_history(tmp_path, "switch.plug")) == 2)
        assert app.stats.events_received["gapfill"] == 1
    assert _history(tmp_path, "sensor.temp") == [(iso_to_ns(_t(0)), 20.5, None), (iso_to_ns(_t(31)), 26.0, None)]
    assert _history(tmp_path, "switch.plug") == [(iso_to_ns(_t(1)), 1.0, "on"), (iso_to_ns(_t(40)), 0.0, "off")]
    # Message ids restart at 1 on each connection and strictly increase within it.
    assert fake_ha.protocol_violations == []
    first_ids = [c["id"] for c in fake_ha.commands if c.get("type") == "supported_features"]
    assert first_ids == [1, 1]


async def test_malformed_frames_are_counted_and_skipped(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        await wait_for(lambda: app.stats.hub_connected)
        sub_id = next(c["id"] for c in fake_ha.commands if c.get("event_type") == "state_changed")
        for bad in [
            "this is not json",
            "[1, 2, 3]",
            '"just a string"',
            '{"id": 9999, "type": "event", "event": {"event_type": "state_changed", "data": {}}}',
            '{"type": "mystery"}',
            f'{{"id": {sub_id}, "type": "event", "event": {{"event_type": "state_changed", "data": '
            '{"entity_id": "sensor.x", "new_state": {"entity_id": "nodot", "state": "1", '
            '"last_updated": "2026-11-20T12:00:00+00:00"}}}}',
            f'{{"id": {sub_id}, "type": "event", "event": {{"event_type": "state_changed", "data": '
            '{"entity_id": "sensor.x", "new_state": {"entity_id": "sensor.x", "state": "1", '
            '"last_updated": "yesterday"}}}}',
            "\u0000\udcff".encode("utf-8", "surrogatepass"),
        ]:
            await fake_ha.send_raw(bad)
        fake_ha.set_state("sensor.temp", "22.0", {"unit_of_measurement": "°C"}, _t(20))
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 2)
        assert app.stats.malformed_messages["home_assistant"] >= 7
        assert app.stats.hub_connected
        assert fake_ha.connections == 1


async def test_coalesced_frames_with_a_stranger_inside(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    """A coalesced frame of the daemon's own state_changed events lands whole (the typed path); one that also
    holds an event for a subscription the daemon does not have takes the general path: its own event still lands,
    the stranger is counted."""
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        await wait_for(lambda: app.stats.hub_connected)
        sub_id = next(c["id"] for c in fake_ha.commands if c.get("event_type") == "state_changed")

        def event(msg_id: int, value: str, second: float) -> dict[str, object]:
            new = make_state("sensor.temp", value, {"unit_of_measurement": "°C"}, _t(second))
            return {"id": msg_id, "type": "event", "event": {"event_type": "state_changed", "data": {
                "entity_id": "sensor.temp", "old_state": None, "new_state": new}}}

        await fake_ha.send_raw(orjson.dumps([event(sub_id, "30", 30), event(sub_id, "31", 31)]).decode())
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 3)
        before = app.stats.malformed_messages["home_assistant"]
        await fake_ha.send_raw(orjson.dumps([event(sub_id + 500, "99", 32), event(sub_id, "33", 33)]).decode())
        await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 4)
        assert app.stats.malformed_messages["home_assistant"] == before + 1
    assert [value for _, value, _ in _history(tmp_path, "sensor.temp")] == [20.5, 30.0, 31.0, 33.0]


async def test_rejected_token_stops_without_retrying(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    settings = daemon_settings(tmp_path, home_assistant={"url": fake_ha.url, "token": "wrong",
                                                       "reconnect_initial_s": 0.05})
    app = App(settings)
    with pytest.raises(AuthError, match="rejected the access token"):
        await asyncio.wait_for(app.run(), timeout=20)
    # The run is over and nothing of it is left running that could try again.
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("homeiq-") and not t.done()] == []
    assert fake_ha.auth_attempts == 1


async def test_dead_connection_is_noticed_by_the_heartbeat(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    settings = _settings(tmp_path, fake_ha, heartbeat_interval_s=0.2, heartbeat_timeout_s=0.3)
    async with running_app(settings) as (app, _):
        await wait_for(lambda: app.stats.hub_connected)
        fake_ha.answer_pings = False  # the socket stays open; HA (or the path to it) is hung
        await wait_for(lambda: fake_ha.connections >= 2, timeout_s=5)
        fake_ha.answer_pings = True
        await wait_for(lambda: app.stats.hub_connected)
        assert app.stats.reconnects >= 1


async def test_large_snapshot_frame_over_4_mib(tmp_path: Path, fake_ha: FakeHomeAssistant) -> None:
    blob = "x" * 2000
    for i in range(3000):  # ~6 MiB get_states result in one frame
        fake_ha.set_state(f"sensor.bulk_{i}", str(i), {"note": blob}, _t(i % 50), notify=False)
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        # Generous ceilings (not timing asserts): ~6 MiB through the snapshot path under coverage on a busy
        # 2-core machine took 17 s once.
        await wait_for(lambda: app.stats.hub_connected, timeout_s=90)
        await wait_for(lambda: len(_history(tmp_path, "sensor.bulk_2999")) == 1, timeout_s=90)


async def test_starts_while_home_assistant_is_down(tmp_path: Path) -> None:
    ha = FakeHomeAssistant()
    await ha.start()
    port = ha.port
    await ha.stop()  # the port is free again: connections are refused
    settings = daemon_settings(tmp_path, home_assistant={"url": f"http://127.0.0.1:{port}", "token": ha.token,
                                                       "reconnect_initial_s": 0.1, "reconnect_max_s": 0.3})
    late = FakeHomeAssistant()
    late.set_state("sensor.temp", "19.0", {"unit_of_measurement": "°C"}, _t(5), notify=False)
    try:
        async with running_app(settings, ready=False) as (app, _):
            await wait_for(lambda: app.stats.hub_down_since is not None)  # a connection attempt has failed
            assert not app.stats.hub_connected
            await late.start(port=port)
            await wait_for(lambda: app.stats.hub_connected, timeout_s=10)
            await wait_for(lambda: len(_history(tmp_path, "sensor.temp")) == 1)
    finally:
        await late.stop()


async def test_a_component_failing_at_start_stops_the_others(tmp_path: Path) -> None:
    """A start-up error after the delivery tasks are running must end the run, not leave it hanging."""
    recording = tmp_path / "gone.jsonl"
    recording.write_text("")
    settings = daemon_settings(tmp_path / "state", replay={"path": recording})
    recording.unlink()  # valid when the settings were read, gone when the replay source opens it
    app = App(settings, exit_when_sources_done=True)
    with pytest.raises(ConfigError, match=r"replay\.path"):
        await asyncio.wait_for(app.run(), timeout=20)
    assert not app.ready.is_set()
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("homeiq-"))


async def _script_history(tmp_path: Path, subscription: str) -> dict[str, list[tuple[int, float | None, str | None]]]:
    ha = FakeHomeAssistant()
    ha.set_state("sensor.temp", "20.5", {"unit_of_measurement": "°C", "friendly_name": "T"}, _t(0), notify=False)
    ha.set_state("light.desk", "off", {"brightness": None, "color_mode": None}, _t(1), notify=False)
    await ha.start()
    try:
        async with running_app(_settings(tmp_path, ha, subscription=subscription)) as (app, _):
            await wait_for(lambda: app.stats.hub_connected)
            ha.set_state("sensor.temp", "21.0", {"unit_of_measurement": "°C", "friendly_name": "T"}, _t(10))
            ha.set_state("light.desk", "on", {"brightness": 128, "color_mode": "brightness"}, _t(11))
            ha.set_state("light.desk", "on", {"brightness": 200}, _t(12))  # an attribute removed
            ha.set_state("sensor.new", "7", {"unit_of_measurement": "W"}, _t(13))  # a new entity
            ha.set_state("sensor.temp", "21.0", {"unit_of_measurement": "°C", "friendly_name": "T"},
                         _t(14.000001))  # only last_updated moved (microseconds kept)
            ha.states.pop("sensor.new")
            ha.fire("state_changed", {"entity_id": "sensor.new", "old_state": None, "new_state": None})
            ha.set_state("sensor.last", "1", {}, _t(15))
            await wait_for(lambda: len(_history(tmp_path, "sensor.last")) == 1)
            assert app.stats.malformed_messages["home_assistant"] == 0
            subscribed = [c["type"] for c in ha.commands if c["type"].startswith("subscribe")]
            assert ("subscribe_entities" in subscribed) == (subscription == "entities")
    finally:
        await ha.stop()
    return {eid: _history(tmp_path, eid) for eid in ("sensor.temp", "light.desk", "sensor.new", "sensor.last")}


async def test_subscribe_entities_gives_the_same_points_as_state_changed(tmp_path: Path) -> None:
    via_events = await _script_history(tmp_path / "events", "state_changed")
    via_entities = await _script_history(tmp_path / "entities", "entities")
    assert via_entities == via_events
    assert [t for t, _, _ in via_events["sensor.temp"]] == [iso_to_ns(_t(s)) for s in (0, 10, 14.000001)]
    assert len(via_events["light.desk"]) == 3
