"""Metadata store: areas, devices and entities (with each entity's latest state) in WAL-mode SQLite.

The only module that reads or writes ``homeiq.db``. One connection writes (registry syncs, coalesced state
flushes, each batch in one transaction); a second, query-only connection serves the HTTP API, so a large
write never holds up a lookup (WAL lets readers run beside the writer). The CLI reads the file with its own
read-only connection, also safe while the daemon runs.

Latest states are write-coalesced: ``note_state`` (a pipeline listener, O(1), no IO) keeps the newest state
per entity in memory, and ``flush_states`` writes the changed entities in one transaction every
``metadata.state_flush_interval_s``: a busy home costs one SQLite commit per interval, not one per event.

``eff_area_id`` is the entity's own area, else its device's; it is kept current after every registry change
so the area filter is one indexed lookup.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from homeiq_daemon.logs import get_logger
from homeiq_daemon.model import EntityState, StateChange
from homeiq_daemon.registry import Area, Device, RegistryEntity
from homeiq_daemon.store.db import open_db, open_readonly

log = get_logger("homeiq.metadata")

MAX_PENDING_STATES = 100_000
_TEXT_LIMIT = 512

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
)

_UPSERT_AREA = (
    "INSERT INTO areas (area_id, name, icon, floor_id, aliases, labels) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (area_id) DO UPDATE SET name=excluded.name, icon=excluded.icon, floor_id=excluded.floor_id, "
    "aliases=excluded.aliases, labels=excluded.labels"
)
_UPSERT_DEVICE = (
    "INSERT INTO devices (device_id, name, name_by_user, manufacturer, model, area_id, via_device_id, disabled_by, "
    "entry_type, sw_version, hw_version, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET name=excluded.name, name_by_user=excluded.name_by_user, "
    "manufacturer=excluded.manufacturer, model=excluded.model, area_id=excluded.area_id, "
    "via_device_id=excluded.via_device_id, disabled_by=excluded.disabled_by, entry_type=excluded.entry_type, "
    "sw_version=excluded.sw_version, hw_version=excluded.hw_version, labels=excluded.labels"
)
_REGISTRY_COLUMNS = (
    "platform, unique_id, device_id, area_id, name, original_name, disabled_by, hidden_by, entity_category, icon, "
    "has_entity_name, labels"
)
_UPSERT_ENTITY = (  # composed of constants; values are bound parameters
    f"INSERT INTO entities (entity_id, domain, in_registry, {_REGISTRY_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (entity_id) DO UPDATE SET in_registry=1, platform=excluded.platform, "
    "unique_id=excluded.unique_id, device_id=excluded.device_id, area_id=excluded.area_id, name=excluded.name, "
    "original_name=excluded.original_name, disabled_by=excluded.disabled_by, hidden_by=excluded.hidden_by, "
    "entity_category=excluded.entity_category, icon=excluded.icon, has_entity_name=excluded.has_entity_name, "
    "labels=excluded.labels"
)
# An entity gone from the registry keeps its row while HA still has a state for it (a state-only entity).
_UNREGISTER_ENTITY = (
    "UPDATE entities SET in_registry=0, platform=NULL, unique_id=NULL, device_id=NULL, area_id=NULL, name=NULL, "
    "original_name=NULL, disabled_by=NULL, hidden_by=NULL, entity_category=NULL, icon=NULL, has_entity_name=0, "
    "labels='[]' WHERE entity_id = ?"
)
_UNREGISTER_MISSING = (
    "UPDATE entities SET in_registry=0, platform=NULL, unique_id=NULL, device_id=NULL, area_id=NULL, name=NULL, "
    "original_name=NULL, disabled_by=NULL, hidden_by=NULL, entity_category=NULL, icon=NULL, has_entity_name=0, "
    "labels='[]' WHERE in_registry = 1 AND entity_id NOT IN (SELECT value FROM json_each(?))"
)
_DROP_EMPTY_ENTITY = "DELETE FROM entities WHERE entity_id = ? AND in_registry = 0 AND state IS NULL"
_UPSERT_STATE = (
    "INSERT INTO entities (entity_id, domain, state, last_changed, last_updated, friendly_name, device_class, unit, "
    "state_class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (entity_id) DO UPDATE SET state=excluded.state, last_changed=excluded.last_changed, "
    "last_updated=excluded.last_updated, friendly_name=excluded.friendly_name, "
    "device_class=excluded.device_class, unit=excluded.unit, state_class=excluded.state_class"
)
_CLEAR_STATE = (
    "UPDATE entities SET state=NULL, last_changed=NULL, last_updated=NULL, friendly_name=NULL, device_class=NULL, "
    "unit=NULL, state_class=NULL WHERE entity_id = ?"
)
_REFRESH_EFF_AREA = (
    "UPDATE entities SET eff_area_id = new.eff FROM (SELECT e.entity_id AS id, COALESCE(e.area_id, d.area_id) AS eff "
    "FROM entities e LEFT JOIN devices d ON d.device_id = e.device_id) AS new "
    "WHERE entities.entity_id = new.id AND entities.eff_area_id IS NOT new.eff"
)

ENTITY_SELECT = (
    "SELECT e.entity_id, e.domain, e.in_registry, e.platform, e.unique_id, e.name, e.original_name, e.friendly_name, "
    "e.icon, e.disabled_by, e.hidden_by, e.entity_category, e.labels, e.device_id, d.name_by_user, d.name, "
    "d.manufacturer, d.model, e.eff_area_id, a.name, e.area_id, e.state, e.last_changed, e.last_updated, "
    "e.device_class, e.unit, e.state_class "
    "FROM entities e LEFT JOIN devices d ON d.device_id = e.device_id LEFT JOIN areas a ON a.area_id = e.eff_area_id"
)
DEVICE_SELECT = (
    "SELECT d.device_id, d.name, d.name_by_user, d.manufacturer, d.model, d.area_id, a.name, d.via_device_id, "
    "d.disabled_by, d.entry_type, d.sw_version, d.hw_version, d.labels, "
    "(SELECT COUNT(*) FROM entities e WHERE e.device_id = d.device_id) "
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


def _json_list(values: Iterable[str]) -> str:
    return orjson.dumps(list(values)).decode()


def _cut(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:_TEXT_LIMIT]


def _state_row(state: EntityState) -> tuple[Any, ...]:
    attrs = state.attributes
    return (
        state.entity_id,
        state.domain,
        state.state[:_TEXT_LIMIT],
        state.last_changed,
        state.last_updated,
        _cut(attrs.get("friendly_name")),
        _cut(attrs.get("device_class")),
        _cut(attrs.get("unit_of_measurement")),
        _cut(attrs.get("state_class")),
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
        needle = query.q.lower()
        where.append(
            "(instr(e.entity_id, ?) > 0 OR instr(lower(COALESCE(e.name, e.friendly_name, e.original_name, '')), ?) > 0)"
        )
        params += [needle, needle]
    if query.after is not None:
        where.append("e.entity_id > ?")
        params.append(query.after)
    sql = ENTITY_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.entity_id LIMIT ?"
    params.append(query.limit)
    return sql, params


@dataclass(slots=True)
class QueryTimes:
    """Durations of the store's reads, by query name, as cumulative histogram buckets (for /metrics)."""

    bounds_s: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
    counts: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        buckets = self.counts.get(name)
        if buckets is None:
            buckets = self.counts[name] = [0] * (len(self.bounds_s) + 1)
            self.sums[name] = 0.0
        for index, bound in enumerate(self.bounds_s):
            if seconds <= bound:
                buckets[index] += 1
                break
        else:
            buckets[-1] += 1
        self.sums[name] += seconds


class MetadataStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: dict[str, EntityState | None] = {}
        self.pending_dropped = 0
        self.states_flushed = 0
        self.query_times = QueryTimes()

    async def start(self) -> None:
        self._writer = await open_db(self.path, MIGRATIONS)
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        await reader.execute("PRAGMA query_only=1")
        await reader.execute("PRAGMA cache_size=-4096")
        self._reader = reader

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # --- writes ---------------------------------------------------------------------------------------

    async def _transaction(self, statements: Sequence[tuple[str, Any, bool]]) -> None:
        """Run (sql, params, many) statements in one transaction; roll back on any error."""
        conn = self._writer
        if conn is None:
            raise RuntimeError("metadata store is not open")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, many in statements:
                if many:
                    await conn.executemany(sql, params)
                else:
                    await conn.execute(sql, params)
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise

    async def replace_areas(self, areas: Sequence[Area]) -> None:
        """A full area list from HA: upsert all, delete the ones HA no longer has."""
        ids = _json_list(a.area_id for a in areas)
        await self._transaction(
            [
                (_UPSERT_AREA, [_area_row(a) for a in areas], True),
                ("DELETE FROM areas WHERE area_id NOT IN (SELECT value FROM json_each(?))", (ids,), False),
            ]
        )

    async def upsert_areas(self, areas: Sequence[Area]) -> None:
        await self._transaction([(_UPSERT_AREA, [_area_row(a) for a in areas], True)])

    async def delete_areas(self, area_ids: Sequence[str]) -> None:
        await self._transaction([("DELETE FROM areas WHERE area_id = ?", [(i,) for i in area_ids], True)])

    async def replace_devices(self, devices: Sequence[Device]) -> None:
        ids = _json_list(d.device_id for d in devices)
        await self._transaction(
            [
                (_UPSERT_DEVICE, [_device_row(d) for d in devices], True),
                ("DELETE FROM devices WHERE device_id NOT IN (SELECT value FROM json_each(?))", (ids,), False),
                (_REFRESH_EFF_AREA, (), False),
            ]
        )

    async def upsert_devices(self, devices: Sequence[Device]) -> None:
        await self._transaction(
            [(_UPSERT_DEVICE, [_device_row(d) for d in devices], True), (_REFRESH_EFF_AREA, (), False)]
        )

    async def delete_devices(self, device_ids: Sequence[str]) -> None:
        await self._transaction(
            [
                ("DELETE FROM devices WHERE device_id = ?", [(i,) for i in device_ids], True),
                (_REFRESH_EFF_AREA, (), False),
            ]
        )

    async def replace_entities(self, entities: Sequence[RegistryEntity]) -> None:
        ids = _json_list(e.entity_id for e in entities)
        await self._transaction(
            [
                (_UPSERT_ENTITY, [_entity_row(e) for e in entities], True),
                (_UNREGISTER_MISSING, (ids,), False),
                ("DELETE FROM entities WHERE in_registry = 0 AND state IS NULL", (), False),
                (_REFRESH_EFF_AREA, (), False),
            ]
        )

    async def upsert_entities(self, entities: Sequence[RegistryEntity]) -> None:
        await self._transaction(
            [(_UPSERT_ENTITY, [_entity_row(e) for e in entities], True), (_REFRESH_EFF_AREA, (), False)]
        )

    async def delete_entities(self, entity_ids: Sequence[str]) -> None:
        """Removed from HA's registry: the row goes (or stays state-only while HA still reports a state)."""
        rows = [(i,) for i in entity_ids]
        await self._transaction([(_UNREGISTER_ENTITY, rows, True), (_DROP_EMPTY_ENTITY, rows, True)])

    # --- latest states, write-coalesced ---------------------------------------------------------------

    def note_state(self, change: StateChange) -> None:
        """Pipeline listener: remember the newest state in memory; ``flush_states`` writes it later."""
        pending = self._pending
        if change.entity_id not in pending and len(pending) >= MAX_PENDING_STATES:
            self.pending_dropped += 1  # bounded: a flood of new entity ids cannot grow memory without end
            return
        pending[change.entity_id] = change.new_state

    @property
    def pending_states(self) -> int:
        return len(self._pending)

    async def flush_states(self) -> int:
        """Write every entity whose state changed since the last flush, in one transaction."""
        if not self._pending or self._writer is None:
            return 0
        pending, self._pending = self._pending, {}
        upserts = [_state_row(s) for s in pending.values() if s is not None]
        removed = [(entity_id,) for entity_id, s in pending.items() if s is None]
        statements: list[tuple[str, Any, bool]] = [(_UPSERT_STATE, upserts, True)]
        if removed:
            statements += [(_CLEAR_STATE, removed, True), (_DROP_EMPTY_ENTITY, removed, True)]
        try:
            await self._transaction(statements)
        except sqlite3.Error:
            # Keep them for the next flush (unless newer states arrived meanwhile).
            for entity_id, state in pending.items():
                self._pending.setdefault(entity_id, state)
            raise
        self.states_flushed += len(pending)
        return len(pending)

    # --- reads (the query-only connection) ------------------------------------------------------------

    async def _fetch(self, name: str, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._reader
        if conn is None:
            raise RuntimeError("metadata store is not open")
        started = time.perf_counter()
        async with conn.execute(sql, params) as cur:
            rows = list(await cur.fetchall())
        self.query_times.add(name, time.perf_counter() - started)
        return rows

    async def entity(self, entity_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("entity", ENTITY_SELECT + " WHERE e.entity_id = ?", (entity_id,))
        return entity_dict(rows[0]) if rows else None

    async def entities(self, query: EntityQuery) -> list[dict[str, Any]]:
        sql, params = entity_query_sql(query)
        return [entity_dict(r) for r in await self._fetch("entities", sql, params)]

    async def devices(
        self, *, area_id: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        sql, params = device_query_sql(area_id, after, limit)
        return [device_dict(r) for r in await self._fetch("devices", sql, params)]

    async def areas(self, *, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = AREA_SELECT + (" WHERE a.area_id > ?" if after is not None else "") + " ORDER BY a.area_id LIMIT ?"
        params: list[Any] = [after, limit] if after is not None else [limit]
        return [area_dict(r) for r in await self._fetch("areas", sql, params)]

    async def load_registries(self) -> tuple[list[Area], list[Device], list[RegistryEntity]]:
        """What the last run stored, so enrichment works before Home Assistant answers."""
        areas = [
            Area(r[0], r[1], r[2], r[3], tuple(orjson.loads(r[4])), tuple(orjson.loads(r[5])))
            for r in await self._fetch("load", "SELECT area_id, name, icon, floor_id, aliases, labels FROM areas", ())
        ]
        devices = [
            Device(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], tuple(orjson.loads(r[11])))
            for r in await self._fetch(
                "load",
                "SELECT device_id, name, name_by_user, manufacturer, model, area_id, via_device_id, disabled_by, "
                "entry_type, sw_version, hw_version, labels FROM devices",
                (),
            )
        ]
        entities = [
            _registry_entity(r)
            for r in await self._fetch(
                "load", f"SELECT entity_id, {_REGISTRY_COLUMNS} FROM entities WHERE in_registry = 1", ()  # noqa: S608
            )
        ]
        return areas, devices, entities


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


def _area_row(a: Area) -> tuple[Any, ...]:
    return (a.area_id, a.name, a.icon, a.floor_id, _json_list(a.aliases), _json_list(a.labels))


def _device_row(d: Device) -> tuple[Any, ...]:
    return (
        d.device_id, d.name, d.name_by_user, d.manufacturer, d.model, d.area_id, d.via_device_id, d.disabled_by,
        d.entry_type, d.sw_version, d.hw_version, _json_list(d.labels),
    )  # fmt: skip


def _entity_row(e: RegistryEntity) -> tuple[Any, ...]:
    return (
        e.entity_id, e.domain, e.platform, e.unique_id, e.device_id, e.area_id, e.name, e.original_name,
        e.disabled_by, e.hidden_by, e.entity_category, e.icon, int(e.has_entity_name), _json_list(e.labels),
    )  # fmt: skip


def _registry_entity(r: Sequence[Any]) -> RegistryEntity:
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
