"""The local HTTP API over real HTTP on loopback, backed by a real SQLite file (and a real influxd for history).

Covers every endpoint, pagination, filters, gzip, the bearer token, and hostile input: SQL metacharacters,
huge limits, bad cursors, unknown parameters, odd paths — always a JSON 4xx, never a 500.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from homeiq_daemon.api.server import ApiContext, ApiServer, EmbeddedHistory
from homeiq_daemon.config import HttpSettings, InfluxDBSettings
from homeiq_daemon.metadata.metrics import StoreCollector
from homeiq_daemon.metadata.registry import Area, Device, RegistryEntity
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.model import EntityState, StateChange, iso_to_ns
from homeiq_daemon.runtime.metrics import Metrics, StatsCollector
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.embedded import HistoryStore
from homeiq_daemon.sinks.influx.query import InfluxHistory
from tests.support.influxd import InfluxServer

AREAS = [Area(f"area_{i:02d}", f"Area {i}") for i in range(12)]
DEVICES = [Device(f"dev{i:03d}", name=f"Device {i}", manufacturer="Acme", model=f"M{i % 3}",
                  area_id=AREAS[i % 12].area_id) for i in range(40)]  # fmt: skip
ENTITIES = [
    RegistryEntity(f"{('sensor', 'light', 'switch')[i % 3]}.thing_{i:03d}", platform="acme",
                   device_id=DEVICES[i % 40].device_id, area_id="area_11" if i % 10 == 0 else None,
                   original_name=f"Thing {i}")
    for i in range(250)
]  # fmt: skip
HOSTILE = [
    "' OR 1=1 --", "x'; DROP TABLE entities; --", '" OR ""="', "%", "_", "\\", "a%b_c", "%00", "*", "1) OR (1=1",
    "sensor' UNION SELECT * FROM kv --", "😀", "ünïcödé", "a" * 255,
]  # fmt: skip


def _state(entity_id: str, value: str, when: str = "2024-03-01T10:00:00+00:00", **attrs: Any) -> EntityState:
    return EntityState(entity_id, value, attrs, when, when, iso_to_ns(when))


class Api:
    def __init__(self, server: ApiServer, session: aiohttp.ClientSession, store: MetadataStore, stats: Stats) -> None:
        self.server = server
        self.session = session
        self.store = store
        self.stats = stats
        self.live: dict[str, EntityState] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.get(self.base + path, **kw) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            data = await resp.json() if ctype.startswith("application/json") and body else body
            return resp.status, data, resp


async def _make_api(tmp_path: Path, *, token: str | None = None, history: Any = None,
                    routes: tuple[tuple[str, str, Any], ...] = ()) -> tuple[Api, Any]:
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    await store.replace_areas(AREAS)
    await store.replace_devices(DEVICES)
    await store.replace_entities(ENTITIES)
    for entity in ENTITIES[:100]:
        store.note_state(StateChange(entity.entity_id, _state(entity.entity_id, "1.5", unit_of_measurement="W"),
                                     None, "live"))  # fmt: skip
    await store.flush_states()
    stats = Stats()
    metrics = Metrics()
    metrics.register(StatsCollector(stats, spool_max_bytes=1 << 20))
    metrics.register(StoreCollector(store))
    live: dict[str, EntityState] = {}
    settings = HttpSettings(port=0, token=SecretStr(token) if token else None)
    context = ApiContext(stats=stats, store=store, metrics=metrics, hub_configured=False, spool_max_bytes=1 << 20,
                         history=history, live_state=live.get, max_page=500)  # fmt: skip
    server = ApiServer(settings, context)
    for route in routes:
        server.add_route(*route)
    await server.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), auto_decompress=True)
    api = Api(server, session, store, stats)
    api.live = live

    async def close() -> None:
        await session.close()
        await server.stop()
        await store.close()

    return api, close


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    made, close = await _make_api(tmp_path)
    try:
        yield made
    finally:
        await close()


async def test_store_file_is_closed_to_others_and_wal(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "homeiq.db"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # the service group reads it, others never
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM entities WHERE eff_area_id = ? ORDER BY entity_id", ("x",)))
        assert "entities_area" in plan  # the area filter is an index lookup
    finally:
        conn.close()


async def test_areas_devices_entities(api: Api) -> None:
    status, body, _ = await api.get("/api/v1/areas")
    assert status == 200
    assert body["count"] == 12
    kitchen = body["items"][0]
    assert kitchen["area_id"] == "area_00"
    assert kitchen["device_count"] == 4

    status, body, _ = await api.get("/api/v1/devices?area=area_01")
    assert status == 200
    assert {d["device_id"] for d in body["items"]} == {"dev001", "dev013", "dev025", "dev037"}
    assert body["items"][0]["entity_count"] > 0

    status, body, _ = await api.get("/api/v1/entities?domain=light&limit=5")
    assert status == 200
    assert [e["domain"] for e in body["items"]] == ["light"] * 5
    assert body["next_cursor"]

    # Effective area: an entity's own area wins over its device's.
    status, body, _ = await api.get("/api/v1/entities/sensor.thing_030")
    assert status == 200
    assert body["area_id"] == "area_11"
    assert body["own_area_id"] == "area_11"
    assert body["device_name"] == "Device 30"
    assert body["manufacturer"] == "Acme"
    assert body["state"] == "1.5"
    assert body["unit_of_measurement"] == "W"
    status, body, _ = await api.get("/api/v1/entities/light.thing_001")
    assert body["area_id"] == "area_01"  # from its device
    assert body["own_area_id"] is None

    status, body, _ = await api.get("/api/v1/entities?area=area_11&limit=500")
    ids = {e["entity_id"] for e in body["items"]}
    assert "sensor.thing_030" in ids
    assert all(e["area_id"] == "area_11" for e in body["items"])

    status, body, _ = await api.get("/api/v1/entities?device=dev002&domain=switch")
    assert {e["entity_id"] for e in body["items"]} == {"switch.thing_002", "switch.thing_122", "switch.thing_242"}

    status, body, _ = await api.get("/api/v1/entities?q=THING_24")
    assert {e["entity_id"] for e in body["items"]} >= {"sensor.thing_240", "light.thing_241", "switch.thing_245"}


async def test_cursor_pagination_visits_every_entity_once(api: Api) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        path = "/api/v1/entities?limit=37" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await api.get(path)
        assert status == 200
        seen += [e["entity_id"] for e in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(e.entity_id for e in ENTITIES)
    assert pages == 7


async def test_huge_limits_are_bounded(api: Api) -> None:
    api.server.ctx.max_page = 100  # http.max_page_size
    for limit in ("100", "101", "100000", "9" * 30):
        status, body, _ = await api.get(f"/api/v1/entities?limit={limit}")
        assert status == 200
        assert body["count"] == 100
        assert body["next_cursor"] is not None
    status, body, _ = await api.get("/api/v1/entities?limit=99")
    assert body["count"] == 99


async def test_hostile_filters_are_plain_values(api: Api) -> None:
    for value in HOSTILE:
        for param in ("domain", "area", "device", "q"):
            if param == "q" and len(value) > 100:
                continue
            status, body, _ = await api.get(f"/api/v1/entities?{param}={quote(value, safe='')}")
            assert status == 200, (param, value, body)
            assert body["items"] == [] or param == "q"
        status, body, _ = await api.get(f"/api/v1/entities/{quote('sensor.' + value, safe='')}")
        assert status == (400 if len("sensor." + value) > 255 else 404), (value, body)
        assert "error" in body
    # Nothing was dropped or changed.
    status, body, _ = await api.get("/api/v1/entities?limit=500")
    assert body["count"] == 250


async def test_bad_parameters_are_json_400(api: Api) -> None:
    bad = [
        "/api/v1/entities?limit=0", "/api/v1/entities?limit=-5", "/api/v1/entities?limit=abc",
        "/api/v1/entities?limit=1e3", "/api/v1/entities?limit=", "/api/v1/entities?cursor=%%%",
        "/api/v1/entities?cursor=" + "A" * 500, "/api/v1/entities?cursor=_w", "/api/v1/entities?domain=",
        "/api/v1/entities?domain=a&domain=b", "/api/v1/entities?nope=1", "/api/v1/entities?q=" + "x" * 101,
        "/api/v1/entities?domain=a%00b", "/api/v1/entities?area=" + "a" * 256, "/api/v1/devices?cursor=!!",
        "/api/v1/areas?limit=two", "/api/v1/entities/nodot", "/api/v1/entities/sensor.x?extra=1",
        "/api/v1/entities/sensor.thing_000/history?start=yesterday",
        "/api/v1/entities/sensor.thing_000/history?start=1h&end=2h",
        "/api/v1/entities/sensor.thing_000/history?limit=0",
    ]  # fmt: skip
    for path in bad:
        status, body, _ = await api.get(path)
        assert status == 400, (path, status, body)
        assert isinstance(body, dict)
        assert body["status"] == 400
        assert body["error"]
    status, body, _ = await api.get("/api/v1/nothing-here")
    assert status == 404
    assert body["status"] == 404
    async with api.session.post(api.base + "/api/v1/entities") as resp:
        assert resp.status == 405
        assert (await resp.json())["status"] == 405


async def test_no_history_backend_is_503(api: Api) -> None:
    status, body, _ = await api.get("/api/v1/entities/sensor.thing_000/history")
    assert status == 503
    assert "history" in body["error"]


async def test_live_state_overlays_the_coalesced_copy(api: Api) -> None:
    newer = _state("sensor.thing_000", "99", "2024-03-01T11:00:00+00:00", friendly_name="Live", extra=[1, 2])
    api.live["sensor.thing_000"] = newer
    status, body, _ = await api.get("/api/v1/entities/sensor.thing_000")
    assert body["state"] == "99"
    assert body["attributes"] == {"friendly_name": "Live", "extra": [1, 2]}
    # Seen by the pipeline but not flushed yet: served from memory.
    api.live["sensor.brand_new"] = _state("sensor.brand_new", "7")
    status, body, _ = await api.get("/api/v1/entities/sensor.brand_new")
    assert status == 200
    assert body["state"] == "7"


async def test_states_are_write_coalesced(api: Api, tmp_path: Path) -> None:
    store = api.store
    for i in range(500):
        when = f"2024-03-02T10:00:{i % 60:02d}.{i:06d}+00:00"
        store.note_state(StateChange("sensor.thing_003", _state("sensor.thing_003", str(i), when), None, "live"))
    conn = sqlite3.connect(f"file:{tmp_path / 'homeiq.db'}?mode=ro", uri=True)
    try:
        before = conn.execute("SELECT state FROM entities WHERE entity_id = 'sensor.thing_003'").fetchone()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        assert before == ("1.5",)  # nothing written per event
        assert store.pending_states == 1
        # An update of a state HA's snapshot restores waits for the final flush (on stop).
        assert await store.flush_states() == 0
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version  # no commit at all
        # A new entity and a staged value are due at the next periodic flush: one commit for both.
        store.note_state(StateChange("sensor.fresh", _state("sensor.fresh", "3"), None, "live"))
        store.stage_value("watermark", "42")
        assert await store.flush_states() == 2
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version + 1
        assert await store.get_value("watermark") == "42"
        assert conn.execute("SELECT state FROM entities WHERE entity_id = 'sensor.thing_003'").fetchone() == ("1.5",)
        assert await store.flush_states(final=True) == 1
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version + 2
        assert conn.execute("SELECT state FROM entities WHERE entity_id = 'sensor.thing_003'").fetchone() == ("499",)
        # Back to what the file holds (only last_updated moved on): nothing to write, even at the end.
        store.note_state(StateChange("sensor.thing_003", _state("sensor.thing_003", "499"), None, "live"))
        assert await store.flush_states(final=True) == 0
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version + 2
        # A removed entity that HA has no registry entry for goes; a registered one keeps its row, stateless.
        store.note_state(StateChange("sensor.thing_003", None, None, "live"))
        store.note_state(StateChange("sensor.adhoc", _state("sensor.adhoc", "1"), None, "live"))
        await store.flush_states()
        store.note_state(StateChange("sensor.adhoc", None, None, "live"))
        await store.flush_states()
        rows = dict(conn.execute("SELECT entity_id, state FROM entities WHERE entity_id IN "
                                 "('sensor.thing_003', 'sensor.adhoc')").fetchall())  # fmt: skip
        assert rows == {"sensor.thing_003": None}
    finally:
        conn.close()


async def test_gzip_for_large_responses(api: Api) -> None:
    async with api.session.get(api.base + "/api/v1/entities?limit=200", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False) as resp:  # fmt: skip
        raw = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
        assert b'"entity_id"' in gzip.decompress(raw)
    async with api.session.get(api.base + "/api/v1/entities?limit=200", headers={"Accept-Encoding": "identity"},
                               auto_decompress=False) as resp:  # fmt: skip
        assert "Content-Encoding" not in resp.headers
    async with api.session.get(api.base + "/healthz", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False) as resp:  # fmt: skip
        assert "Content-Encoding" not in resp.headers  # small: not worth it


async def test_healthz_and_metrics(api: Api) -> None:
    status, body, _ = await api.get("/healthz")
    assert status == 200  # no hub configured, sink up
    assert body["status"] == "ok"
    api.stats.sink_state = "down"
    api.stats.sink_down_since = time.time() - 1000
    status, body, _ = await api.get("/healthz")
    assert status == 503
    assert body["status"] == "critical"

    api.stats.record_flush(0.03)
    api.stats.points_dropped["spool_full"] += 3
    await api.get("/api/v1/entities/sensor.thing_000")
    status, text, resp = await api.get("/metrics")
    assert status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    metrics = text.decode()
    for needle in (
        'homeiq_points_dropped_total{reason="spool_full"} 3.0',
        'homeiq_flush_duration_seconds_bucket{le="0.05"} 1.0',
        'homeiq_sqlite_query_duration_seconds_count{query="entity"}',
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "homeiq_spool_bytes",
        "homeiq_hub_reconnects_total",
        'homeiq_http_request_duration_seconds_count{route="/api/v1/entities/{entity_id}"} 1.0',
    ):
        assert needle in metrics, needle


async def test_bearer_token(tmp_path: Path) -> None:
    api, close = await _make_api(tmp_path, token="s3cret-token")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"},
                        {"Authorization": "Bearer s3cret-tokenX"}, {"Authorization": "Bearer "}):  # fmt: skip
            status, body, resp = await api.get("/api/v1/areas", headers=headers)
            assert status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "s3cret" not in str(body)
        status, body, _ = await api.get("/api/v1/areas", headers={"Authorization": "Bearer s3cret-token"})
        assert status == 200
        status, _, _ = await api.get("/healthz")  # health and metrics stay open for probes and scrapers
        assert status == 200
    finally:
        await close()


async def test_a_feature_adds_its_own_route_before_the_start(tmp_path: Path) -> None:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": request.match_info["n"]})

    routes = (("GET", "/feature/ping/{n}", ping), ("GET", "/api/v1/feature/{n}", ping))
    api, close = await _make_api(tmp_path, token="s3cret-token", routes=routes)
    try:
        status, body, _ = await api.get("/feature/ping/7")  # outside /api/: the feature checks its callers
        assert (status, body) == (200, {"pong": "7"})
        status, _, _ = await api.get("/api/v1/feature/7")  # under /api/: the server's token applies
        assert status == 401
        status, body, _ = await api.get("/api/v1/feature/8", headers={"Authorization": "Bearer s3cret-token"})
        assert (status, body) == (200, {"pong": "8"})
        with pytest.raises(RuntimeError, match="after the server started"):
            api.server.add_route("GET", "/late", ping)
    finally:
        await close()


async def test_history_from_embedded_store(tmp_path: Path) -> None:
    history = HistoryStore(tmp_path / "history.db", retention_days=3650)
    await history.start()
    now = time.time_ns()
    lines = [f'W,domain=sensor,entity_id=thing_000 value={i}.5 {now - (10 - i) * 1_000_000_000}' for i in range(10)]
    await history.write(("\n".join(lines) + "\n").encode(), 10)
    api, close = await _make_api(tmp_path, history=EmbeddedHistory(history))
    try:
        status, body, _ = await api.get("/api/v1/entities/sensor.thing_000/history?start=1h")
        assert status == 200
        assert body["source"] == "embedded"
        assert [p["value"] for p in body["points"]] == [i + 0.5 for i in range(10)]
        status, body, _ = await api.get("/api/v1/entities/sensor.thing_000/history?start=1h&limit=3")
        assert body["count"] == 3
        assert body["truncated"] is True
        status, body, _ = await api.get(f"/api/v1/entities/{quote(HOSTILE[1], safe='')}.x/history")
        assert status == 200
        assert body["points"] == []
    finally:
        await close()
        await history.close()


@pytest.mark.influxd
async def test_history_from_influxdb(tmp_path: Path, influxd_server: InfluxServer, influx_db: str) -> None:
    now = time.time_ns()
    lines = [f"°C,domain=sensor,entity_id=thing_000 value={20 + i} {now - (5 - i) * 10**9}" for i in range(5)]
    lines.append(f'sensor.thing_000,domain=sensor,entity_id=thing_000 state="unavailable" {now - 500_000_000}')
    lines.append(f"°C,domain=sensor,entity_id=thing_001 value=99 {now - 10**9}")
    # An entity whose object id is an injection attempt gets exactly its own points.
    lines.append(f"°C,domain=sensor,entity_id=x'\\ OR\\ '1'\\='1 value=7 {now - 10**9}")
    status, text = influxd_server.write(("\n".join(lines) + "\n").encode(), influx_db)
    assert status == 204, text
    reader = InfluxHistory(InfluxDBSettings(url=influxd_server.url, database=influx_db))
    await reader.start()
    api, close = await _make_api(tmp_path, history=reader)
    try:
        status, body, _ = await api.get("/api/v1/entities/sensor.thing_000/history?start=1h")
        assert status == 200, body
        assert body["source"] == "influxdb"
        assert [p["value"] for p in body["points"]] == [20.0, 21.0, 22.0, 23.0, 24.0, None]
        assert body["points"][-1]["state"] == "unavailable"
        assert body["points"][0]["measurement"] == "°C"
        status, body, _ = await api.get("/api/v1/entities/" + quote("sensor.x' OR '1'='1", safe="") + "/history")
        assert status == 200, body
        assert [p["value"] for p in body["points"]] == [7.0]
        for value in HOSTILE:
            status, body, _ = await api.get(f"/api/v1/entities/{quote('sensor.' + value, safe='')}/history")
            assert status == (400 if len("sensor." + value) > 255 else 200), (value, body)
    finally:
        await close()
        await reader.close()


async def test_history_backend_down_is_502(tmp_path: Path) -> None:
    reader = InfluxHistory(InfluxDBSettings(url="http://127.0.0.1:9", database="x", timeout_s=2))
    await reader.start()
    api, close = await _make_api(tmp_path, history=reader)
    try:
        status, body, _ = await api.get("/api/v1/entities/sensor.thing_000/history")
        assert status == 502
        assert "history backend" in body["error"]
    finally:
        await close()
        await reader.close()
