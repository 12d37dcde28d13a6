"""The read API and the history never return secret-like attributes: a camera's ``access_token``, an
``entity_picture`` with ``?token=``, anything named like a token, password, secret or API key, at any depth;
the allow-list (``http.unredacted_attributes``) shows a named attribute as it is. Against a real socket, the
real metadata store, the real embedded history and a real influxd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from homeiq_daemon.api.server import ApiContext, ApiServer, EmbeddedHistory
from homeiq_daemon.config import HttpSettings, InfluxDBSettings, MappingSettings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.model import EntityState, iso_to_ns
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.redaction import MASK
from homeiq_daemon.runtime.metrics import Metrics
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.embedded import HistoryStore
from homeiq_daemon.sinks.influx.query import InfluxHistory
from tests.support.influxd import InfluxServer

WHEN = "2026-11-20T12:00:00+00:00"
SECRETS = ("cam-token-1a2b3c", "pic-token-4d5e6f", "hunter2", "sk-live-999", "nested-secret-777", "url-pass-42")
ATTRIBUTES: dict[str, Any] = {
    "friendly_name": "Front door",
    "access_token": SECRETS[0],
    "entity_picture": f"/api/camera_proxy/camera.front_door?token={SECRETS[1]}",
    "Password": SECRETS[2],
    "api_key": SECRETS[3],
    "stream": {"source": "rtsp://cam.local/live", "auth": {"client_secret": SECRETS[4]}},
    "snapshot_url": f"http://admin:{SECRETS[5]}@cam.local/snap.jpg",
    "token_count": 3,
    "brightness": 200,
}


def camera_state() -> EntityState:
    return EntityState("camera.front_door", "idle", ATTRIBUTES, WHEN, WHEN, iso_to_ns(WHEN))


def camera_line() -> bytes:
    """The point the daemon writes for that state (attributes as fields, strings as <name>_str)."""
    line = PointMapper(MappingSettings()).map_line(camera_state())
    assert line is not None
    return (line + "\n").encode()


async def serve(tmp_path: Path, history: Any = None, **http: Any) -> tuple[ApiServer, MetadataStore]:
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    live = {"camera.front_door": camera_state()}
    context = ApiContext(stats=Stats(), store=store, metrics=Metrics(), hub_configured=False,
                         spool_max_bytes=1 << 20, history=history, live_state=live.get)  # fmt: skip
    server = ApiServer(HttpSettings(port=0, **http), context)
    await server.start()
    return server, store


async def fetch(server: ApiServer, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}{path}") as resp:
        return resp.status, await resp.text()


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[HistoryStore]:
    store = HistoryStore(tmp_path / "history.db", retention_days=3650)
    await store.start()
    await store.write(camera_line(), 1)
    try:
        yield store
    finally:
        await store.close()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


async def test_entity_attributes_are_redacted(tmp_path: Path) -> None:
    server, store = await serve(tmp_path)
    try:
        status, text = await fetch(server, "/api/v1/entities/camera.front_door")
    finally:
        await server.stop()
        await store.close()
    assert status == 200
    assert_no_secret(text)
    assert f'"access_token":"{MASK}"' in text
    assert f'"entity_picture":"/api/camera_proxy/camera.front_door?token={MASK}"' in text
    assert '"snapshot_url":"http://**********@cam.local/snap.jpg"' in text
    assert '"brightness":200' in text
    assert '"friendly_name":"Front door"' in text


async def test_embedded_history_fields_are_redacted(tmp_path: Path, history: HistoryStore) -> None:
    server, store = await serve(tmp_path, history=EmbeddedHistory(history))
    try:
        status, text = await fetch(server, "/api/v1/entities/camera.front_door/history?start=2026-11-20T00:00:00Z"
                                           "&end=2026-11-21T00:00:00Z")  # fmt: skip
    finally:
        await server.stop()
        await store.close()
    assert status == 200
    assert '"count":1' in text
    assert_no_secret(text)


@pytest.mark.influxd
async def test_influxdb_history_fields_are_redacted(
    tmp_path: Path, influxd_server: InfluxServer, influx_db: str
) -> None:
    assert influxd_server.write(camera_line(), influx_db)[0] == 204
    reader = InfluxHistory(InfluxDBSettings(url=influxd_server.url, database=influx_db))
    await reader.start()
    server, store = await serve(tmp_path, history=reader)
    try:
        status, text = await fetch(server, "/api/v1/entities/camera.front_door/history?start=2026-11-20T00:00:00Z"
                                           "&end=2026-11-21T00:00:00Z")  # fmt: skip
    finally:
        await server.stop()
        await store.close()
        await reader.close()
    assert status == 200
    assert '"count":1' in text
    assert_no_secret(text)
    assert f'"access_token_str":"{MASK}"' in text


async def test_the_allow_list_shows_a_named_attribute(tmp_path: Path) -> None:
    server, store = await serve(tmp_path, unredacted_attributes=["api_key"])
    try:
        _, text = await fetch(server, "/api/v1/entities/camera.front_door")
    finally:
        await server.stop()
        await store.close()
    assert SECRETS[3] in text  # the one allowed
    assert SECRETS[0] not in text
    assert '"token_count":3' in text  # a number is no credential
