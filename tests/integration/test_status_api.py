"""GET / (the status page's files) and GET /api/v1/status over real HTTP on loopback: the document's facts,
the page's files and their headers, and the token (Bearer for the API, Basic with the token as password for a
browser, which then sends the same header with the page's API calls)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from homeiq_daemon import __version__
from homeiq_daemon.api.server import ApiContext, ApiServer
from homeiq_daemon.api.status import StatusView, webhook_section
from homeiq_daemon.config import HttpSettings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.metrics import Metrics
from homeiq_daemon.runtime.progress import Progress
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.webhooks.stats import WebhookStats

TOKEN = "page-token"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Stats, Activity, WebhookStats]]:
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    stats = Stats()
    activity = Activity(stats)
    hooks = WebhookStats()
    view = StatusView(stats, activity, hub_configured=True, spool_max_bytes=1 << 20, sink="InfluxDB test")
    view.sections["webhooks"] = webhook_section(hooks)
    context = ApiContext(stats=stats, store=store, metrics=Metrics(), hub_configured=True, spool_max_bytes=1 << 20,
                         status=view.document)  # fmt: skip
    server = ApiServer(HttpSettings(port=0, token=SecretStr(TOKEN)), context)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", stats, activity, hooks
    finally:
        await server.stop()
        await store.close()


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(
        url, headers=headers or {}
    ) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, resp.headers


async def test_the_page_and_its_api_need_the_token(served: tuple[str, Stats, Activity, WebhookStats]) -> None:
    base = served[0]
    status, body, headers = await fetch(base + "/")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="homeiq"')  # the browser asks for it
    assert "password" in body["error"]
    for bad in (basic("homeiq", "wrong"), basic(TOKEN, ""), {"Authorization": "Basic !!notbase64"},
                {"Authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
        assert (await fetch(base + "/", bad))[0] == 401
        assert (await fetch(base + "/api/v1/status", bad))[0] == 401
    status, _, headers = await fetch(base + "/api/v1/status")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    for good in (basic("anyone", TOKEN), {"Authorization": f"Bearer {TOKEN}"}):
        assert (await fetch(base + "/", good))[0] == 200
        assert (await fetch(base + "/api/v1/status", good))[0] == 200
    assert (await fetch(base + "/healthz"))[0] in (200, 503)  # probes stay open, as before


async def test_static_files_are_the_packaged_ones(served: tuple[str, Stats, Activity, WebhookStats]) -> None:
    base = served[0]
    auth = basic("x", TOKEN)
    status, html, headers = await fetch(base + "/", auth)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert '<script src="/static/status.js"' in html
    assert "http://" not in html.replace('href="/', "")  # nothing from elsewhere
    for name, kind in (("status.js", "text/javascript"), ("status.css", "text/css")):
        status, text, headers = await fetch(f"{base}/static/{name}", auth)
        assert status == 200
        assert headers["Content-Type"].startswith(kind)
        assert "https://" not in text
    for missing in ("/static/nope.js", "/static/index.html", "/static/..%2fserver.py", "/static/"):
        assert (await fetch(base + missing, auth))[0] == 404


async def test_status_document_reports_the_daemon(served: tuple[str, Stats, Activity, WebhookStats]) -> None:
    base, stats, activity, hooks = served
    stats.events_received["live"] += 7
    stats.points_written = 5
    stats.hub_connected = True
    stats.hub_state = "connected"
    stats.sink_state = "up"
    stats.spool_points = 3
    stats.spool_oldest_ms = 1_700_000_000_000
    stats.record_dead_letter("HTTP 400: field type conflict")
    for _ in range(3):
        activity.count_entity("sensor.busy")
    activity.count_entity("sensor.calm")
    backfill = Progress("backfill", total=200, unit="states", board=stats.progress)
    backfill.update(50)
    hooks.record_outcome("door", "ha", "delivered", attempts=1, http_status=200, error=None)
    hooks.record_outcome("door", "ha", "dead", attempts=9, http_status=503, error="HTTP 503")
    status, doc, headers = await fetch(base + "/api/v1/status", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert doc["version"] == __version__
    assert doc["status"] == "degraded"  # the spool holds points
    assert doc["home_assistant"]["connected"] is True
    assert doc["home_assistant"]["since"] is not None
    assert doc["sink"]["state"] == "up"
    assert doc["sink"]["describe"] == "InfluxDB test"
    assert doc["events"]["total"] == 7
    assert doc["points"]["written"] == 5
    assert doc["last_hour"][-1]["events"] == 7
    assert doc["spool"]["points"] == 3
    assert doc["spool"]["oldest"] == "2023-11-14T22:13:20Z"
    assert doc["dead_letters"]["count"] == 1
    assert doc["dead_letters"]["recent"][0]["reason"] == "HTTP 400: field type conflict"
    assert doc["busiest"] == [{"entity_id": "sensor.busy", "events": 3}, {"entity_id": "sensor.calm", "events": 1}]
    [work] = doc["work"]
    assert (work["task"], work["done"], work["total"], work["finished"]) == ("backfill", 50, 200, False)
    hooks_doc = doc["webhooks"]
    assert (hooks_doc["delivered"], hooks_doc["failed"]) == (1, 1)
    assert [d["outcome"] for d in hooks_doc["recent"]] == ["dead", "delivered"]  # newest first
    status, _, _ = await fetch(base + "/api/v1/status?x=1", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400
