"""Reading history from InfluxDB: InfluxQL over HTTP (``/query``), for ``/api/v1/.../history``,
``homeiq history`` and the status page. Every value in a query is escaped (``influxql_string``)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from homeiq_daemon.config import InfluxDBSettings
from homeiq_daemon.errors import HistoryUnavailable
from homeiq_daemon.model import ns_to_iso
from homeiq_daemon.sinks.influx.http import InfluxClient


def influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal. InfluxQL's scanner knows the escapes \\\\, \\', \\" and \\n
    and refuses a raw newline; nothing else needs escaping."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def influxql_identifier(value: str) -> str:
    """A double-quoted InfluxQL identifier (same scanner as strings)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def entity_history_query(
    entity_id: str,
    start_ns: int,
    end_ns: int,
    limit: int,
    *,
    database: str | None = None,
    rp: str | None = None,
    newest_first: bool = False,
) -> str:
    """Points of one entity across every measurement (the HA schema puts it under its unit, or its id)."""
    domain, _, object_id = entity_id.partition(".")
    source = "/.*/"
    if database and rp:
        source = f"{influxql_identifier(database)}.{influxql_identifier(rp)}./.*/"
    return (  # every value is escaped above, or is an int
        f'SELECT * FROM {source} WHERE "domain" = {influxql_string(domain)} AND '  # noqa: S608
        f'"entity_id" = {influxql_string(object_id)} AND time >= {int(start_ns)} AND time < {int(end_ns)} '
        f"ORDER BY time {'DESC' if newest_first else 'ASC'} LIMIT {int(limit)}"
    )


def parse_query_points(payload: object, *, newest_first: bool = False) -> list[dict[str, Any]]:
    """A /query JSON answer (``epoch=ns``) -> points sorted by time: ``{time_ns, measurement, value, state,
    fields}`` where ``fields`` holds every other non-null column (fields and extra tags)."""
    if not isinstance(payload, dict):
        raise HistoryUnavailable("InfluxDB answered something that is not a JSON object")
    if payload.get("error"):
        raise HistoryUnavailable(str(payload["error"])[:300])
    points: list[dict[str, Any]] = []
    for result in payload.get("results") or []:
        if not isinstance(result, dict):
            continue
        if result.get("error"):
            raise HistoryUnavailable(str(result["error"])[:300])
        for series in result.get("series") or []:
            columns = series.get("columns") or []
            measurement = series.get("name")
            for values in series.get("values") or []:
                row = dict(zip(columns, values, strict=False))
                time_ns = row.pop("time", None)
                if not isinstance(time_ns, int):
                    continue
                row.pop("domain", None)
                row.pop("entity_id", None)
                value = row.pop("value", None)
                state = row.pop("state", None)
                points.append(
                    {
                        "time_ns": time_ns,
                        "measurement": measurement,
                        "value": value,
                        "state": state,
                        "fields": {k: v for k, v in row.items() if v is not None},
                    }
                )
    points.sort(key=lambda p: p["time_ns"], reverse=newest_first)
    return points


class InfluxHistory(InfluxClient):
    """Reads one entity's history with InfluxQL (``/query``; on 2.x through its v1-compatible endpoint, which
    needs a DBRP mapping for the bucket)."""

    source = "influxdb"

    def __init__(self, settings: InfluxDBSettings) -> None:
        super().__init__(settings)
        self._url = f"{settings.url}/query"
        self._database = settings.database if settings.api_version == 1 else (settings.bucket or "")
        self._headers = {"Accept": "application/json"}

    async def entity_points(
        self, entity_id: str, start_ns: int, end_ns: int, limit: int, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """As ``entity_history``, with ``time_ns`` (an int) instead of ``time``."""
        rp = self._settings.retention_policy if self._settings.api_version == 1 else None
        q = entity_history_query(
            entity_id, start_ns, end_ns, limit, database=self._database, rp=rp, newest_first=newest_first
        )
        return parse_query_points(await self.query(q), newest_first=newest_first)[:limit]  # LIMIT is per measurement

    async def query(self, influxql: str) -> object:
        if self._session is None:
            raise HistoryUnavailable("history reader is not started")
        params = {"db": self._database, "q": influxql, "epoch": "ns"}
        if self._settings.retention_policy:
            params["rp"] = self._settings.retention_policy
        try:
            async with self._session.get(self._url, params=params, headers=self._headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise HistoryUnavailable(f"HTTP {resp.status}: {body[:200].decode(errors='replace')}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HistoryUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HistoryUnavailable("InfluxDB answered with invalid JSON") from None

    async def entity_history(
        self, entity_id: str, start_ns: int, end_ns: int, limit: int, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` points, oldest first (or the newest ``limit``, newest first), ``time`` as ISO."""
        points = await self.entity_points(entity_id, start_ns, end_ns, limit, newest_first=newest_first)
        for point in points:
            point["time"] = ns_to_iso(point.pop("time_ns"))
        return points
