"""Registries mirrored from the real Home Assistant 2024.3.3: areas, devices and entities added, renamed,
moved and deleted in HA (over its own WebSocket API, as its UI does) show up in the metadata store.

HA cannot create devices over its API, so a tiny test-only integration (tests/support/ha_registry_helper)
is loaded into this HA to create and remove devices, each with one registry entity.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from homeiq_daemon.metadata.sql import EntityQuery, read_devices, read_entities
from tests.support.daemon import daemon_settings, running_app, wait_for
from tests.support.real_ha import RealHomeAssistant

pytestmark = pytest.mark.ha

HELPER_DIR = Path(__file__).resolve().parents[1] / "support" / "ha_registry_helper"
HELPER = "homeiq_registry_helper"


class RegistryHomeAssistant(RealHomeAssistant):
    def _write_config(self) -> None:
        super()._write_config()
        target = self.config_dir / "custom_components" / HELPER
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(HELPER_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        with (self.config_dir / "configuration.yaml").open("a") as fh:
            fh.write(f"{HELPER}:\n")


class AdminSocket:
    """A second WebSocket client for the test's own registry edits (the daemon keeps its own connection)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, msg_type: str, **payload: Any) -> Any:
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "type": msg_type, **payload})
        while True:
            message = await self._ws.receive_json(timeout=30)
            if message.get("id") == msg_id and message.get("type") == "result":
                if not message["success"]:
                    raise AssertionError(f"{msg_type}: {message['error']}")
                return message["result"]


@pytest.fixture
def registry_ha(ha_venv: Path, tmp_path: Path) -> Iterator[RegistryHomeAssistant]:
    ha = RegistryHomeAssistant(tmp_path / "ha", ha_venv)
    ha.start()
    try:
        yield ha
    finally:
        ha.stop()


@pytest.fixture
async def admin(registry_ha: RegistryHomeAssistant) -> AsyncIterator[AdminSocket]:
    async with aiohttp.ClientSession() as session, session.ws_connect(registry_ha.websocket_url) as ws:
        assert (await ws.receive_json(timeout=30))["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": registry_ha.token})
        assert (await ws.receive_json(timeout=30))["type"] == "auth_ok"
        yield AdminSocket(ws)


def _entities(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        rows = read_entities(state_dir / "homeiq.db", EntityQuery(limit=100_000))
    except FileNotFoundError:
        return {}
    return {e["entity_id"]: e for e in rows}


def _devices(state_dir: Path) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in read_devices(state_dir / "homeiq.db")}


def _areas(state_dir: Path) -> dict[str, str]:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{state_dir / 'homeiq.db'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT area_id, name FROM areas").fetchall())
    finally:
        conn.close()


async def test_registry_changes_in_real_ha_reach_the_store(
    tmp_path: Path, registry_ha: RegistryHomeAssistant, admin: AdminSocket
) -> None:
    state_dir = tmp_path / "state"
    settings = daemon_settings(
        state_dir,
        home_assistant={"url": registry_ha.base_url, "token": registry_ha.token},
        metadata={"state_flush_interval_s": 0.2, "registry_refresh_delay_s": 0.1},
    )
    async with running_app(settings) as (app, _):
        await wait_for(lambda: app.registry_sync.full_syncs >= 1, timeout_s=30)
        # What HA had at connect: its YAML helpers are registry entities with states.
        await wait_for(lambda: _entities(state_dir).get("input_boolean.e2e_switch", {}).get("state") == "off")
        assert _entities(state_dir)["input_boolean.e2e_switch"]["in_registry"] is True
        assert _entities(state_dir)["input_boolean.e2e_switch"]["platform"] == "input_boolean"

        # Areas: add, rename.
        loft = await admin.call("config/area_registry/create", name="Loft")
        cellar = await admin.call("config/area_registry/create", name="Cellar")
        await wait_for(lambda: _areas(state_dir).get(loft["area_id"]) == "Loft")
        await admin.call("config/area_registry/update", area_id=loft["area_id"], name="Attic")
        await wait_for(lambda: _areas(state_dir).get(loft["area_id"]) == "Attic")

        # Devices: add (with an entity), rename, move to an area; the entity follows its device's area.
        registry_ha.call_service(HELPER, "create_device", {"key": "meter_one", "name": "Meter One"})
        device_id = (await wait_for(lambda: [d for d, v in _devices(state_dir).items() if v["name"] == "Meter One"]))[0]
        await wait_for(lambda: _entities(state_dir).get("sensor.meter_one", {}).get("device_id") == device_id)
        await admin.call("config/device_registry/update", device_id=device_id, name_by_user="Main meter",
                         area_id=loft["area_id"])  # fmt: skip
        await wait_for(lambda: _devices(state_dir)[device_id]["name"] == "Main meter")
        assert _devices(state_dir)[device_id]["area_id"] == loft["area_id"]
        await wait_for(lambda: _entities(state_dir)["sensor.meter_one"]["area_id"] == loft["area_id"])
        assert _entities(state_dir)["sensor.meter_one"]["area_name"] == "Attic"
        assert _entities(state_dir)["sensor.meter_one"]["manufacturer"] == "homeiq"

        # Entities: move to its own area (wins over the device's), rename its entity_id, then delete it.
        await admin.call("config/entity_registry/update", entity_id="sensor.meter_one", area_id=cellar["area_id"],
                         name="Reading")  # fmt: skip
        await wait_for(lambda: _entities(state_dir)["sensor.meter_one"]["area_id"] == cellar["area_id"])
        assert _entities(state_dir)["sensor.meter_one"]["name"] == "Reading"
        await admin.call("config/entity_registry/update", entity_id="sensor.meter_one",
                         new_entity_id="sensor.main_meter")  # fmt: skip
        await wait_for(lambda: "sensor.main_meter" in _entities(state_dir) and "sensor.meter_one" not in
                       _entities(state_dir))  # fmt: skip
        await admin.call("config/entity_registry/remove", entity_id="sensor.main_meter")
        await wait_for(lambda: "sensor.main_meter" not in _entities(state_dir))

        # Delete an area: HA clears it from devices and entities, and so does the store.
        await admin.call("config/area_registry/delete", area_id=loft["area_id"])
        await wait_for(lambda: loft["area_id"] not in _areas(state_dir))
        await wait_for(lambda: _devices(state_dir)[device_id]["area_id"] is None)

        # Delete a device.
        registry_ha.call_service(HELPER, "remove_device", {"key": "meter_one"})
        await wait_for(lambda: device_id not in _devices(state_dir))

        # A YAML helper moved to an area keeps its state.
        await admin.call(
            "config/entity_registry/update", entity_id="input_boolean.e2e_switch", area_id=cellar["area_id"]
        )
        await wait_for(lambda: _entities(state_dir)["input_boolean.e2e_switch"]["area_id"] == cellar["area_id"])
        assert _entities(state_dir)["input_boolean.e2e_switch"]["state"] == "off"
        assert app.registry_sync.failures == 0
        assert app.registry_sync.malformed == 0
