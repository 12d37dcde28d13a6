"""dashboards/homeiq.json: every panel's InfluxQL, with Grafana's macros substituted, run against a real influxd
holding the example recording (examples/home.jsonl replayed through the daemon), must return rows."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.app import App
from tests.support.daemon import daemon_settings
from tests.support.influxd import InfluxServer

pytestmark = pytest.mark.influxd

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "homeiq.json"
EXAMPLE = ROOT / "examples" / "home.jsonl"
# The recording spans 2026-11-20 11:55-12:20 UTC; the dashboard is looked at over a window around it.
TIME_FILTER = "time >= '2026-11-20T11:50:00Z' AND time <= '2026-11-20T12:30:00Z'"
MACROS = {
    "$__timeFilter": TIME_FILTER,
    "$timeFilter": TIME_FILTER,
    "$__interval_ms": "60000ms",
    "$__interval": "1m",
    "$interval": "1m",
}


def panels() -> list[dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text())
    return [p for p in data["panels"] if p["type"] != "row"]


def substitute(query: str) -> str:
    for macro in sorted(MACROS, key=len, reverse=True):  # $__interval_ms before $__interval
        query = query.replace(macro, MACROS[macro])
    assert "$" not in query, f"a macro or variable left unsubstituted: {query}"
    return query


def test_the_dashboard_is_importable_and_uses_one_influxql_datasource_input() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in data["__inputs"]] == ["DS_INFLUXDB"]
    assert data["__inputs"][0]["pluginId"] == "influxdb"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "influxdb", "uid": "${DS_INFLUXDB}"}, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] is True  # InfluxQL text, as written here
            assert target["query"].lstrip().upper().startswith("SELECT ")
    titles = " ".join(p["title"].lower() for p in panels())
    for subject in ("temperature", "humidity", "power", "energy", "binary", "battery", "points written"):
        assert subject in titles


async def test_every_panel_query_returns_rows_for_the_example(tmp_path: Path, influxd_private: InfluxServer) -> None:
    influx = influxd_private
    settings = daemon_settings(
        tmp_path / "state",
        influxdb={"url": influx.url, "database": "dashboard"},
        replay={"path": str(EXAMPLE)},
        shutdown_timeout_s=10.0,
    )
    app = App(settings, exit_when_sources_done=True)
    await asyncio.wait_for(app.run(), timeout=120)
    assert app.stats.points_written >= 500, app.stats.points_written

    empty = []
    for panel in panels():
        for target in panel["targets"]:
            query = substitute(target["query"])
            series = await asyncio.to_thread(influx.query, query, "dashboard")
            values = [v for s in series for row in s.get("values", []) for v in row[1:] if v is not None]
            if not values:
                empty.append(f"{panel['title']}: {query}")
    assert not empty, "panels with no rows:\n" + "\n".join(empty)


def test_unknown_macros_are_caught() -> None:
    with pytest.raises(AssertionError, match="unsubstituted"):
        substitute('SELECT mean("value") FROM "W" WHERE $timeFilter AND "entity_id" =~ /^$entity$/')
    assert re.search(r"60000ms", substitute("GROUP BY time($__interval_ms)"))
