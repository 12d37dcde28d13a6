"""The metadata store's SQL: schema migrations, statements, row <-> dict conversions, and the CLI's
read-only queries. Every value reaches SQLite as a bound parameter; only constants are composed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.metadata.latest import TEXT_LIMIT, cut
from homeiq_daemon.metadata.registry import Area, Device, RegistryEntity
from homeiq_daemon.model import EntityState
from homeiq_daemon.runtime.sqlite import open_readonly

MIGRATIONS = (
    """
    CREATE TABLE areas (
        area_id  TEXT PRIMARY KEY,
        name     TEXT NOT NULL,
        icon     TEXT,
        floor_id TEXT,
        aliases  TEXT NOT NULL DEFAULT '[]',
        labels   TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        device_id     TEXT PRIMARY KEY,
        name          TEXT,
        name_by_user  TEXT,
        manufacturer  TEXT,
        model         TEXT,
        area_id       TEXT,
        via_device_id TEXT,
        disabled_by   TEXT,
        entry_type    TEXT,
        sw_version    TEXT,
        hw_version    TEXT,
        labels        TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID;
    CREATE INDEX devices_area ON devices (area_id, device_id);
    CREATE TABLE entities (
        entity_id       TEXT PRIMARY KEY,
        domain          TEXT NOT NULL,
        in_registry     INTEGER NOT NULL DEFAULT 0,
        platform        TEXT,
        unique_id       TEXT,
        device_id       TEXT,
        area_id         TEXT,
        eff_area_id     TEXT,
        name            TEXT,
        original_name   TEXT,
        disabled_by     TEXT,
        hidden_by       TEXT,
        entity_category TEXT,
        icon            TEXT,
        has_entity_name INTEGER NOT NULL DEFAULT 0,
        labels          TEXT NOT NULL DEFAULT '[]',
        state           TEXT,
        last_changed    TEXT,
        last_updated    TEXT,
        friendly_name   TEXT,
        device_class    TEXT,
        unit            TEXT,
        state_class     TEXT
    ) WITHOUT ROWID;
    CREATE INDEX entities_domain ON entities (domain, entity_id);
    CREATE INDEX entities_device ON entities (device_id, entity_id);
    CREATE INDEX entities_area ON entities (eff_area_id, entity_id);
    """,
    # Devices and entities of other sources (SwitchBot) live beside Home Assistant's: a registry sync replaces
    # only its own source's rows. kv: small durable values of other components (e.g. an API budget).
    """
    ALTER TABLE devices ADD COLUMN source TEXT NOT NULL DEFAULT 'home_assistant';
    ALTER TABLE entities ADD COLUMN source TEXT NOT NULL DEFAULT 'home_assistant';
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
)

def _upsert(table: str, key: str, columns: Sequence[str], fixed: str = "") -> str:
    """INSERT ... ON CONFLICT DO UPDATE that leaves an unchanged row alone: a registry sync at every reconnect
    then writes no page for what did not change (SQLite rewrites a page on any UPDATE, equal values or not)."""
    names = ", ".join((key, *columns))
    marks = ", ".join("?" for _ in range(len(columns) + 1)) if not fixed else ""
    sets = ", ".join(f"{c}=excluded.{c}" for c in columns)
    changed = " OR ".join(f"{table}.{c} IS NOT excluded.{c}" for c in columns)
    if fixed:  # e.g. entities: in_registry=1 is a constant of the statement
        column, value = fixed.split("=")
        names = ", ".join((key, columns[0], column, *columns[1:]))
        marks = ", ".join(["?", "?", value, *("?" for _ in columns[1:])])
        sets = f"{fixed}, {sets}"
        changed = f"{table}.{column} IS NOT {value} OR {changed}"
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "  # noqa: S608 - constants only
        f"ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {changed}"
    )


UPSERT_AREA = _upsert("areas", "area_id", ("name", "icon", "floor_id", "aliases", "labels"))
UPSERT_DEVICE = _upsert(
    "devices",
    "device_id",
    (
        "name", "name_by_user", "manufacturer", "model", "area_id", "via_device_id", "disabled_by", "entry_type",
        "sw_version", "hw_version", "labels", "source",
    ),
)  # fmt: skip
_REGISTRY_COLUMN_NAMES = (
    "platform", "unique_id", "device_id", "area_id", "name", "original_name", "disabled_by", "hidden_by",
    "entity_category", "icon", "has_entity_name", "labels",
)  # fmt: skip
REGISTRY_COLUMNS = ", ".join(_REGISTRY_COLUMN_NAMES)
UPSERT_ENTITY = _upsert("entities", "entity_id", ("domain", *_REGISTRY_COLUMN_NAMES, "source"), "in_registry=1")
# An entity gone from the registry keeps its row while HA still has a state for it (a state-only entity).
UNREGISTER_ENTITY = (
    "UPDATE entities SET in_registry=0, platform=NULL, unique_id=NULL, device_id=NULL, area_id=NULL, name=NULL, "
    "original_name=NULL, disabled_by=NULL, hidden_by=NULL, entity_category=NULL, icon=NULL, has_entity_name=0, "
    "labels='[]' WHERE entity_id = ?"
)
UNREGISTER_MISSING = (
    "UPDATE entities SET in_registry=0, platform=NULL, unique_id=NULL, device_id=NULL, area_id=NULL, name=NULL, "
    "original_name=NULL, disabled_by=NULL, hidden_by=NULL, entity_category=NULL, icon=NULL, has_entity_name=0, "
    "labels='[]' WHERE in_registry = 1 AND source = ? AND entity_id NOT IN (SELECT value FROM json_each(?))"
)
DROP_EMPTY_ENTITY = "DELETE FROM entities WHERE entity_id = ? AND in_registry = 0 AND state IS NULL"
UPSERT_STATE = (
    "INSERT INTO entities (entity_id, domain, state, last_changed, last_updated, friendly_name, device_class, unit, "
    "state_class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (entity_id) DO UPDATE SET state=excluded.state, last_changed=excluded.last_changed, "
    "last_updated=excluded.last_updated, friendly_name=excluded.friendly_name, "
    "device_class=excluded.device_class, unit=excluded.unit, state_class=excluded.state_class"
)
CLEAR_STATE = (
    "UPDATE entities SET state=NULL, last_changed=NULL, last_updated=NULL, friendly_name=NULL, device_class=NULL, "
    "unit=NULL, state_class=NULL WHERE entity_id = ?"
)
REFRESH_EFF_AREA = (
    "UPDATE entities SET eff_area_id = new.eff FROM (SELECT e.entity_id AS id, COALESCE(e.area_id, d.area_id) AS eff "
    "FROM entities e LEFT JOIN devices d ON d.device_id = e.device_id) AS new "
    "WHERE entities.entity_id = new.id AND entities.eff_area_id IS NOT new.eff"
)

ENTITY_SELECT = (
    "SELECT e.entity_id, e.domain, e.in_registry, e.platform, e.unique_id, e.name, e.original_name, e.friendly_name, "
    "e.icon, e.disabled_by, e.hidden_by, e.entity_category, e.labels, e.device_id, d.name_by_user, d.name, "
    "d.manufacturer, d.model, e.eff_area_id, a.name, e.area_id, e.state, e.last_changed, e.last_updated, "
    "e.device_class, e.unit, e.state_class, e.source "
    "FROM entities e LEFT JOIN devices d ON d.device_id = e.device_id LEFT JOIN areas a ON a.area_id = e.eff_area_id"
)
DEVICE_SELECT = (
    "SELECT d.device_id, d.name, d.name_by_user, d.manufacturer, d.model, d.area_id, a.name, d.via_device_id, "
    "d.disabled_by, d.entry_type, d.sw_version, d.hw_version, d.labels, "
    "(SELECT COUNT(*) FROM entities e WHERE e.device_id = d.device_id), d.source "
    "FROM devices d LEFT JOIN areas a ON a.area_id = d.area_id"
)
AREA_SELECT = (
    "SELECT a.area_id, a.name, a.icon, a.floor_id, a.aliases, a.labels, "
    "(SELECT COUNT(*) FROM devices d WHERE d.area_id = a.area_id), "
    "(SELECT COUNT(*) FROM entities e WHERE e.eff_area_id = a.area_id) FROM areas a"
)


@dataclass(frozen=True, slots=True)
class EntityQuery:
    """Filters of an entity list; every one is an indexed column (``q`` excepted: a substring scan)."""

    domain: str | None = None
    area_id: str | None = None
    device_id: str | None = None
    q: str | None = None
    after: str | None = None
    limit: int = 100


def json_list(values: Iterable[str]) -> str:
    return orjson.dumps(list(values)).decode()


def state_row(state: EntityState) -> tuple[Any, ...]:
    attrs = state.attributes
    return (
        state.entity_id,
        state.domain,
        state.state[:TEXT_LIMIT],
        state.last_changed,
        state.last_updated,
        cut(attrs.get("friendly_name")),
        cut(attrs.get("device_class")),
        cut(attrs.get("unit_of_measurement")),
        cut(attrs.get("state_class")),
    )


def entity_query_sql(query: EntityQuery) -> tuple[str, list[Any]]:
    """The one SELECT for an entity page: filters as bound parameters, never as SQL text."""
    where: list[str] = []
    params: list[Any] = []
    if query.domain is not None:
        where.append("e.domain = ?")
        params.append(query.domain)
    if query.area_id is not None:
        where.append("e.eff_area_id = ?")
        params.append(query.area_id)
    if query.device_id is not None:
        where.append("e.device_id = ?")
        params.append(query.device_id)
    if query.q is not None:
        needle = query.q.casefold()  # casefold(): runtime/sqlite.py registers it on every connection
        shown = "COALESCE(e.name, e.friendly_name, e.original_name, '')"
        where.append(f"(instr(e.entity_id, ?) > 0 OR instr(casefold({shown}), ?) > 0)")
        params += [needle, needle]
    if query.after is not None:
        where.append("e.entity_id > ?")
        params.append(query.after)
    sql = ENTITY_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.entity_id LIMIT ?"
    params.append(query.limit)
    return sql, params


def device_query_sql(area_id: str | None, after: str | None, limit: int) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if area_id is not None:
        where.append("d.area_id = ?")
        params.append(area_id)
    if after is not None:
        where.append("d.device_id > ?")
        params.append(after)
    sql = DEVICE_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY d.device_id LIMIT ?"
    return sql, [*params, limit]


# --- rows <-> dicts -----------------------------------------------------------------------------------------


def area_row(a: Area) -> tuple[Any, ...]:
    return (a.area_id, a.name, a.icon, a.floor_id, json_list(a.aliases), json_list(a.labels))


def device_row(d: Device) -> tuple[Any, ...]:
    return (
        d.device_id, d.name, d.name_by_user, d.manufacturer, d.model, d.area_id, d.via_device_id, d.disabled_by,
        d.entry_type, d.sw_version, d.hw_version, json_list(d.labels),
    )  # fmt: skip


def entity_row(e: RegistryEntity) -> tuple[Any, ...]:
    return (
        e.entity_id, e.domain, e.platform, e.unique_id, e.device_id, e.area_id, e.name, e.original_name,
        e.disabled_by, e.hidden_by, e.entity_category, e.icon, int(e.has_entity_name), json_list(e.labels),
    )  # fmt: skip


def registry_entity(r: Sequence[Any]) -> RegistryEntity:
    return RegistryEntity(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]), tuple(orjson.loads(r[12]))
    )


def entity_dict(r: Sequence[Any]) -> dict[str, Any]:
    device_name = r[14] or r[15]
    return {
        "entity_id": r[0],
        "domain": r[1],
        "name": r[5] or r[7] or r[6],
        "in_registry": bool(r[2]),
        "platform": r[3],
        "unique_id": r[4],
        "original_name": r[6],
        "icon": r[8],
        "disabled_by": r[9],
        "hidden_by": r[10],
        "entity_category": r[11],
        "labels": orjson.loads(r[12]),
        "device_id": r[13],
        "device_name": device_name,
        "manufacturer": r[16],
        "model": r[17],
        "area_id": r[18],
        "area_name": r[19],
        "own_area_id": r[20],
        "state": r[21],
        "last_changed": r[22],
        "last_updated": r[23],
        "device_class": r[24],
        "unit_of_measurement": r[25],
        "state_class": r[26],
        "source": r[27],
    }


def device_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "device_id": r[0],
        "name": r[2] or r[1],
        "original_name": r[1],
        "name_by_user": r[2],
        "manufacturer": r[3],
        "model": r[4],
        "area_id": r[5],
        "area_name": r[6],
        "via_device_id": r[7],
        "disabled_by": r[8],
        "entry_type": r[9],
        "sw_version": r[10],
        "hw_version": r[11],
        "labels": orjson.loads(r[12]),
        "entity_count": r[13],
        "source": r[14],
    }


def area_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "area_id": r[0],
        "name": r[1],
        "icon": r[2],
        "floor_id": r[3],
        "aliases": orjson.loads(r[4]),
        "labels": orjson.loads(r[5]),
        "device_count": r[6],
        "entity_count": r[7],
    }


# --- the CLI's read-only access -------------------------------------------------------------------------------


def read_devices(path: Path, area: str | None = None, limit: int = 100_000) -> list[dict[str, Any]]:
    conn = open_readonly(path)
    try:
        sql, params = device_query_sql(area, None, limit)
        return [device_dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def read_entities(path: Path, query: EntityQuery) -> list[dict[str, Any]]:
    conn = open_readonly(path)
    try:
        sql, params = entity_query_sql(query)
        return [entity_dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def resolve_area(path: Path, text: str) -> str | None:
    """An area id from an id or a name (case-insensitive), for the CLI."""
    conn = open_readonly(path)
    try:
        row = conn.execute(
            "SELECT area_id FROM areas WHERE area_id = ? OR casefold(name) = casefold(?) ORDER BY area_id != ? LIMIT 1",
            (text, text, text),
        ).fetchone()
        return str(row[0]) if row else None
    finally:
        conn.close()
