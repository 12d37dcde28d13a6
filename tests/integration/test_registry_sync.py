"""Registry sync against the protocol-exact fake HA, through the whole daemon: full lists at connect,
``*_registry_updated`` events (ids only, as HA sends them) fetched again, removals, a reconnect that
finds changes made while away, enrichment tags on points, and the API/CLI reading the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from homeiq_daemon import cli
from homeiq_daemon.metadata.sql import EntityQuery, read_devices, read_entities
from homeiq_daemon.sinks.embedded import read_history
from tests.support.daemon import daemon_settings, running_app, wait_for
from tests.support.fake_ha import ClientConn, FakeHomeAssistant


def area(area_id: str, name: str) -> dict[str, Any]:
    return {"aliases": [], "area_id": area_id, "icon": None, "name": name, "picture": None}


def device(device_id: str, name: str, area_id: str | None) -> dict[str, Any]:
    return {"area_id": area_id, "configuration_url": None, "config_entries": ["ce1"], "connections": [],
            "disabled_by": None, "entry_type": None, "hw_version": None, "id": device_id, "identifiers": [["x", "1"]],
            "manufacturer": "Acme", "model": "A1", "name_by_user": None, "name": name, "serial_number": None,
            "sw_version": "1.0", "via_device_id": None}  # fmt: skip


def entity(entity_id: str, device_id: str | None = None, area_id: str | None = None) -> dict[str, Any]:
    return {"area_id": area_id, "config_entry_id": "ce1", "device_id": device_id, "disabled_by": None,
            "entity_category": None, "entity_id": entity_id, "has_entity_name": False, "hidden_by": None,
            "icon": None, "id": "id-" + entity_id, "labels": [], "name": None, "options": {},
            "original_name": entity_id.split(".")[1].title(), "platform": "acme", "translation_key": None,
            "unique_id": "u-" + entity_id}  # fmt: skip


class RegistryFakeHA(FakeHomeAssistant):
    """The fake plus ``config/entity_registry/get_entries`` and registry edits that fire HA's events."""

    def __init__(self) -> None:
        super().__init__()
        self.get_entries_calls = 0

    async def _command(self, client: ClientConn, msg: dict[str, Any]) -> None:
        msg_id = msg.get("id")
        if msg.get("type") == "config/entity_registry/get_entries" and isinstance(msg_id, int) and (
            msg_id > client.last_id
        ):
            client.last_id = msg_id
            self.commands.append(msg)
            self.get_entries_calls += 1
            by_id = {e["entity_id"]: e for e in self.registries["config/entity_registry/list"]}
            result = {eid: by_id.get(eid) for eid in msg.get("entity_ids", [])}
            self._queue(client, {"id": msg_id, "type": "result", "success": True, "result": result})
            return
        await super()._command(client, msg)

    def _list(self, kind: str) -> list[dict[str, Any]]:
        return self.registries[f"config/{kind}_registry/list"]

    def upsert(self, kind: str, item: dict[str, Any], *, notify: bool = True) -> None:
        key = {"area": "area_id", "device": "id", "entity": "entity_id"}[kind]
        items = self._list(kind)
        existing = [i for i, old in enumerate(items) if old[key] == item[key]]
        if existing:
            items[existing[0]] = item
        else:
            items.append(item)
        if notify:
            id_key = {"area": "area_id", "device": "device_id", "entity": "entity_id"}[kind]
            data: dict[str, Any] = {"action": "update" if existing else "create", id_key: item[key]}
            if existing and kind != "area":
                data["changes"] = {}
            self.fire(f"{kind}_registry_updated", data)

    def remove(self, kind: str, item_id: str, *, notify: bool = True) -> None:
        key = {"area": "area_id", "device": "id", "entity": "entity_id"}[kind]
        self.registries[f"config/{kind}_registry/list"] = [i for i in self._list(kind) if i[key] != item_id]
        if notify:
            id_key = {"area": "area_id", "device": "device_id", "entity": "entity_id"}[kind]
            self.fire(f"{kind}_registry_updated", {"action": "remove", id_key: item_id})

    def rename_entity(self, old_id: str, new_id: str) -> None:
        for item in self._list("entity"):
            if item["entity_id"] == old_id:
                item["entity_id"] = new_id
        self.fire("entity_registry_updated", {"action": "update", "entity_id": new_id,
                                              "changes": {"entity_id": old_id}, "old_entity_id": old_id})  # fmt: skip


@pytest.fixture
async def fake_ha() -> AsyncIterator[RegistryFakeHA]:
    ha = RegistryFakeHA()
    ha.registries["config/area_registry/list"] = [area("kitchen", "Kitchen"), area("office", "Office")]
    ha.registries["config/device_registry/list"] = [device("dev1", "Thermostat", "kitchen"),
                                                    device("dev2", "Plug", None)]  # fmt: skip
    ha.registries["config/entity_registry/list"] = [
        entity("sensor.temperature", "dev1"), entity("switch.plug", "dev2", "office"), entity("light.desk", None)
    ]
    ha.set_state("sensor.temperature", "20.5", {"unit_of_measurement": "°C"}, notify=False)
    ha.set_state("switch.plug", "on", {}, notify=False)
    await ha.start()
    try:
        yield ha
    finally:
        await ha.stop()


def _entities(state_dir: Path, **filters: Any) -> dict[str, dict[str, Any]]:
    return {e["entity_id"]: e for e in read_entities(state_dir / "homeiq.db", EntityQuery(limit=10_000, **filters))}


def _settings(tmp_path: Path, ha: FakeHomeAssistant) -> Any:
    return daemon_settings(
        tmp_path,
        home_assistant={"url": ha.url, "token": ha.token, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        http={"enabled": True, "port": 0},
        metadata={"state_flush_interval_s": 0.2, "registry_refresh_delay_s": 0.05},
        mapping={"area_tag": True, "device_tag": True},
    )


async def test_registries_mirror_home_assistant(tmp_path: Path, fake_ha: RegistryFakeHA) -> None:
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        sync = app.registry_sync
        await wait_for(lambda: sync.full_syncs >= 1)
        await wait_for(lambda: _entities(tmp_path).get("sensor.temperature", {}).get("state") == "20.5")
        found = _entities(tmp_path)
        assert set(found) == {"sensor.temperature", "switch.plug", "light.desk"}
        assert found["sensor.temperature"]["area_id"] == "kitchen"  # through its device
        assert found["sensor.temperature"]["device_name"] == "Thermostat"
        assert found["switch.plug"]["area_id"] == "office"  # its own
        assert found["light.desk"]["state"] is None  # registered, no state yet

        # Create, rename, move: HA sends ids only; the daemon fetches what changed.
        fake_ha.upsert("area", area("attic", "Attic"))
        fake_ha.upsert("area", area("kitchen", "Cooking"))
        fake_ha.upsert("device", device("dev1", "Thermostat", "attic"))
        fake_ha.upsert("entity", entity("sensor.humidity", "dev1"))
        fake_ha.rename_entity("light.desk", "light.desk_lamp")
        fake_ha.set_state("sensor.humidity", "40", {"unit_of_measurement": "%"})
        await wait_for(lambda: set(_entities(tmp_path)) == {
            "sensor.temperature", "switch.plug", "light.desk_lamp", "sensor.humidity"})  # fmt: skip
        await wait_for(lambda: _entities(tmp_path)["sensor.temperature"]["area_id"] == "attic")
        await wait_for(lambda: _entities(tmp_path)["sensor.humidity"]["state"] == "40")  # coalesced: a flush later
        assert _entities(tmp_path)["sensor.humidity"]["area_id"] == "attic"
        assert set(_entities(tmp_path, area_id="attic")) == {"sensor.temperature", "sensor.humidity"}
        assert fake_ha.get_entries_calls >= 1  # entity events fetch only the changed entries

        # Remove: an area (HA clears the area of what was in it and says so), a device, an entity.
        fake_ha.remove("area", "office")
        fake_ha.upsert("entity", entity("switch.plug", "dev2", None))
        fake_ha.remove("entity", "sensor.humidity")
        fake_ha.set_state("sensor.humidity", "41", notify=False)
        fake_ha.states.pop("sensor.humidity")
        fake_ha.fire("state_changed", {"entity_id": "sensor.humidity", "old_state": None, "new_state": None})
        await wait_for(lambda: "sensor.humidity" not in _entities(tmp_path))
        await wait_for(lambda: _entities(tmp_path)["switch.plug"]["area_id"] is None)

        # The API reads the same store.
        port = app.server.port if app.server else None
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/areas") as resp:
                areas = {a["area_id"]: a["name"] for a in (await resp.json())["items"]}
            assert areas == {"kitchen": "Cooking", "attic": "Attic"}
            async with session.get(f"http://127.0.0.1:{port}/api/v1/entities/sensor.temperature") as resp:
                body = await resp.json()
            assert body["area_name"] == "Attic"

        # Enrichment: new points carry the area and device tags, from memory.
        fake_ha.set_state("sensor.temperature", "22.0", {"unit_of_measurement": "°C"})
        await wait_for(lambda: any(
            r.fields.get("value") == 22.0 for r in read_history(tmp_path / "history.db", "sensor.temperature", 0, 2**62)
        ))  # fmt: skip
        conn_rows = read_history(tmp_path / "history.db", "sensor.temperature", 0, 2**62)
        assert conn_rows[-1].value == 22.0

        # Changes while disconnected are found by the full sync on reconnect.
        syncs = sync.full_syncs
        await fake_ha.drop_connections()
        fake_ha.remove("device", "dev2", notify=False)
        fake_ha.remove("entity", "switch.plug", notify=False)
        fake_ha.states.pop("switch.plug")
        fake_ha.upsert("area", area("garage", "Garage"), notify=False)
        await wait_for(lambda: sync.full_syncs > syncs and app.stats.hub_connected)
        await wait_for(lambda: "switch.plug" not in _entities(tmp_path))
        assert [d["device_id"] for d in read_devices(tmp_path / "homeiq.db")] == ["dev1"]

        # A malformed registry event is counted and skipped.
        fake_ha.fire("area_registry_updated", {"action": "explode"})
        await wait_for(lambda: sync.malformed >= 1)
        assert app.stats.hub_connected
    assert fake_ha.protocol_violations == []


async def test_enrichment_tags_on_points(tmp_path: Path, fake_ha: RegistryFakeHA) -> None:
    async with running_app(_settings(tmp_path, fake_ha)) as (app, _):
        await wait_for(lambda: app.registry_sync.full_syncs >= 1)
        fake_ha.set_state("sensor.temperature", "23.0", {"unit_of_measurement": "°C"})
        fake_ha.set_state("light.desk", "on", {})
        rows = await wait_for(lambda: [r for r in read_history(tmp_path / "history.db", "sensor.temperature", 0, 2**62)
                                       if r.value == 23.0])  # fmt: skip
        light = await wait_for(lambda: read_history(tmp_path / "history.db", "light.desk", 0, 2**62))
    conn = __import__("sqlite3").connect(tmp_path / "history.db")
    try:
        stored = dict(conn.execute("SELECT entity_id, fields FROM points WHERE entity_id IN "
                                   "('sensor.temperature', 'light.desk') ORDER BY time_ns").fetchall())  # fmt: skip
    finally:
        conn.close()
    assert rows
    assert light
    tags = orjson.loads(stored["sensor.temperature"])["tags"]
    assert tags["area"] == "kitchen"
    assert tags["device"] == "Thermostat"
    assert "area" not in orjson.loads(stored["light.desk"])["tags"]  # no area, no device: no tag


async def test_cli_reads_while_daemon_runs(tmp_path: Path, fake_ha: RegistryFakeHA,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    settings = _settings(tmp_path, fake_ha)
    async with running_app(settings) as (app, _):
        await wait_for(lambda: app.registry_sync.full_syncs >= 1)
        env = {"HOMEIQ_STATE_DIR": str(tmp_path)}
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)

            def listed() -> str | None:  # the store commits the sync on its own schedule: poll the CLI
                assert cli.main(["devices"]) == 0
                printed = capsys.readouterr().out
                return printed if "Thermostat" in printed else None

            out = await wait_for(listed)
            assert "Thermostat" in out
            assert "Kitchen" in out
            assert cli.main(["entities", "--area", "Kitchen", "--json"]) == 0
            lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [e["entity_id"] for e in lines] == ["sensor.temperature"]
            assert cli.main(["entities", "--domain", "switch"]) == 0
            assert "switch.plug" in capsys.readouterr().out
            assert cli.main(["entities", "--area", "nowhere"]) == 1
