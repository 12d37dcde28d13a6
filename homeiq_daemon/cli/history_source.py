"""Where ``homeiq history`` reads: the configured sink. InfluxDB (``/query``, InfluxQL; on 2.x its v1-compatible
endpoint) when ``influxdb.url`` is set, else the embedded history store. Rows come newest first: ``--limit N``
shows the N most recent points of the window."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from homeiq_daemon.config import Settings
from homeiq_daemon.errors import HistoryUnavailable, HomeIQError

QUERY_DEADLINE_S = 60.0  # the whole command, above the per-request influxdb.timeout_s


@dataclass(frozen=True, slots=True)
class Point:
    time_ns: int
    entity_id: str
    measurement: str
    value: float | None
    state: str | None
    fields: dict[str, Any]


def describe_source(settings: Settings) -> str:
    if settings.uses_influxdb:
        where = settings.influxdb.database if settings.influxdb.api_version == 1 else settings.influxdb.bucket
        return f"InfluxDB {settings.influxdb.url} ({where})"
    return f"embedded history in {settings.history_db_path}"


def newest_points(settings: Settings, entity_id: str, start_ns: int, end_ns: int, limit: int) -> list[Point]:
    """The newest ``limit`` points of ``entity_id`` in ``[start_ns, end_ns)``, newest first."""
    if settings.uses_influxdb:
        return asyncio.run(_from_influx(settings, entity_id, start_ns, end_ns, limit))
    from homeiq_daemon.sinks.embedded import read_history  # noqa: PLC0415

    try:
        rows = read_history(settings.history_db_path, entity_id, start_ns, end_ns, limit, newest_first=True)
    except FileNotFoundError:
        raise HomeIQError(
            f"no embedded history at {settings.history_db_path} (has the daemon run with no InfluxDB set?)"
        ) from None
    return [Point(r.time_ns, r.entity_id, r.measurement, r.value, r.state, r.fields) for r in rows]


async def _from_influx(settings: Settings, entity_id: str, start_ns: int, end_ns: int, limit: int) -> list[Point]:
    from homeiq_daemon.sinks.influx.query import InfluxHistory  # noqa: PLC0415 - aiohttp only for this path

    reader = InfluxHistory(settings.influxdb)
    await reader.start()
    try:
        points = await asyncio.wait_for(
            reader.entity_points(entity_id, start_ns, end_ns, limit, newest_first=True), QUERY_DEADLINE_S
        )
    except (HistoryUnavailable, TimeoutError) as exc:
        raise HomeIQError(f"history from {describe_source(settings)}: {exc or 'no answer in time'}") from None
    finally:
        await reader.close()
    return [
        Point(p["time_ns"], entity_id, str(p["measurement"]), _number(p["value"]), _text(p["state"]), p["fields"])
        for p in points
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
