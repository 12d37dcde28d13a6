"""Metadata store: areas, devices and entities (with each entity's latest state) in WAL-mode SQLite.

The only module that reads or writes ``homeiq.db``. One connection writes (registry syncs, coalesced state
flushes, each batch in one transaction); a second, query-only connection serves the HTTP API, so a large
write never holds up a lookup (WAL lets readers run beside the writer). The CLI reads the file with its own
read-only connection, also safe while the daemon runs.

Latest states are write-coalesced and written only when it matters (``latest.py`` decides what and when):
``note_state`` (a pipeline listener, O(1), no IO) keeps them in memory, and ``flush_states`` writes what is
due in one transaction every ``metadata.state_flush_interval_s``, everything on stop. Other components stage
small durable values (``stage_value``) into the same transaction: one commit per interval at most, none when
nothing changed.

``eff_area_id`` is the entity's own area, else its device's; it is kept current after every registry change
so the area filter is one indexed lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import orjson

from homeiq_daemon.metadata.latest import LatestStates, RowKey
from homeiq_daemon.metadata.registry import Area, Device, RegistryEntity
from homeiq_daemon.metadata.sql import (
    AREA_SELECT,
    CLEAR_STATE,
    DROP_EMPTY_ENTITY,
    ENTITY_SELECT,
    MIGRATIONS,
    REFRESH_EFF_AREA,
    REGISTRY_COLUMNS,
    UNREGISTER_ENTITY,
    UNREGISTER_MISSING,
    UPSERT_AREA,
    UPSERT_DEVICE,
    UPSERT_ENTITY,
    UPSERT_STATE,
    EntityQuery,
    area_dict,
    area_row,
    device_dict,
    device_query_sql,
    device_row,
    entity_dict,
    entity_query_sql,
    entity_row,
    json_list,
    registry_entity,
    state_row,
)
from homeiq_daemon.model import StateChange
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.sqlite import add_functions, add_functions_async, open_db
from homeiq_daemon.runtime.stats import QueryTimes

log = get_logger("homeiq.metadata")

MAX_PENDING_STATES = 100_000
HA_SOURCE = "home_assistant"
CHUNK_ROWS = 128
INLINE_MAX_ROWS = 201  # a 200-item page (plus the one that tells whether there is a next page)
UPSERT_VALUE = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value"


class MetadataStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._latest = LatestStates(MAX_PENDING_STATES)
        # One transaction at a time on the writer: a flush and a registry or SwitchBot upsert interleave at
        # their awaits, and a second BEGIN inside the first fails ("cannot start a transaction within a
        # transaction").
        self._write_lock = asyncio.Lock()
        self.states_flushed = 0
        self.query_times = QueryTimes()

    async def start(self) -> None:
        self._writer = await open_db(self.path, MIGRATIONS)
        async with self._writer.execute(
            "SELECT entity_id, state, friendly_name, device_class, unit, state_class FROM entities "
            "WHERE state IS NOT NULL"
        ) as cur:
            self._latest.load((r[0], cast(RowKey, tuple(r[1:]))) for r in await cur.fetchall())
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        await add_functions_async(reader)
        await reader.execute("PRAGMA busy_timeout=5000")
        await reader.execute("PRAGMA query_only=1")
        await reader.execute("PRAGMA cache_size=-1024")
        self._reader = reader
        # Bounded reads run in the event loop on this connection (see _fetch).
        inline = sqlite3.connect(self.path, isolation_level=None, timeout=0.0)
        add_functions(inline)
        inline.execute("PRAGMA query_only=1")
        inline.execute("PRAGMA cache_size=-1024")
        self._inline = inline

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # --- writes ---------------------------------------------------------------------------------------

    async def _transaction(self, statements: Sequence[tuple[Any, ...]]) -> None:
        """Run (sql, params, many[, convert]) statements in one transaction; roll back on any error.

        Rows go in chunks of ``CHUNK_ROWS``: binding rows holds the GIL in the SQLite thread, and one
        5,000-row executemany stalled the event loop (and with it the API and the HA reader) for 5-12 ms;
        chunks keep each stall near a millisecond. Still one transaction, one commit.
        """
        async with self._write_lock:
            await self._run_transaction(statements)

    async def _run_transaction(self, statements: Sequence[tuple[Any, ...]]) -> None:
        conn = self._writer
        if conn is None:
            raise RuntimeError("metadata store is not open")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, many, *convert in statements:
                if many:
                    rows = params if isinstance(params, list) else list(params)
                    for start in range(0, len(rows), CHUNK_ROWS):
                        chunk = rows[start : start + CHUNK_ROWS]
                        if convert:  # rows built chunk by chunk too: 5,000 at once held the loop for ms
                            chunk = [convert[0](item) for item in chunk]
                        await conn.executemany(sql, chunk)
                else:
                    await conn.execute(sql, params)
            await conn.execute("COMMIT")
        except BaseException:
            # Cancelled inside COMMIT, the commit may finish in SQLite's thread before this ROLLBACK runs
            # ("no transaction is active"): that must never replace the CancelledError, or a stop hangs.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
            raise

    async def replace_areas(self, areas: Sequence[Area]) -> None:
        """A full area list from HA: upsert all, delete the ones HA no longer has."""
        ids = json_list(a.area_id for a in areas)
        await self._transaction(
            [
                (UPSERT_AREA, [area_row(a) for a in areas], True),
                ("DELETE FROM areas WHERE area_id NOT IN (SELECT value FROM json_each(?))", (ids,), False),
            ]
        )

    async def upsert_areas(self, areas: Sequence[Area]) -> None:
        await self._transaction([(UPSERT_AREA, [area_row(a) for a in areas], True)])

    async def delete_areas(self, area_ids: Sequence[str]) -> None:
        await self._transaction([("DELETE FROM areas WHERE area_id = ?", [(i,) for i in area_ids], True)])

    async def replace_devices(self, devices: Sequence[Device], source: str = HA_SOURCE) -> None:
        """A full device list of one source: upsert all, delete that source's devices not in it."""
        ids = json_list(d.device_id for d in devices)
        await self._transaction(
            [
                (UPSERT_DEVICE, [(*device_row(d), source) for d in devices], True),
                (
                    "DELETE FROM devices WHERE source = ? AND device_id NOT IN (SELECT value FROM json_each(?))",
                    (source, ids),
                    False,
                ),
                (REFRESH_EFF_AREA, (), False),
            ]
        )

    async def replace_source_devices(self, source: str, devices: Sequence[Device]) -> None:
        await self.replace_devices(devices, source)

    async def upsert_devices(self, devices: Sequence[Device], source: str = HA_SOURCE) -> None:
        await self._transaction(
            [(UPSERT_DEVICE, [(*device_row(d), source) for d in devices], True), (REFRESH_EFF_AREA, (), False)]
        )

    async def delete_devices(self, device_ids: Sequence[str]) -> None:
        await self._transaction(
            [
                ("DELETE FROM devices WHERE device_id = ?", [(i,) for i in device_ids], True),
                (REFRESH_EFF_AREA, (), False),
            ]
        )

    async def replace_entities(self, entities: Sequence[RegistryEntity]) -> None:
        ids = json_list(e.entity_id for e in entities)
        await self._transaction(
            [
                (UPSERT_ENTITY, [(*entity_row(e), HA_SOURCE) for e in entities], True),
                (UNREGISTER_MISSING, (HA_SOURCE, ids), False),
                ("DELETE FROM entities WHERE in_registry = 0 AND state IS NULL", (), False),
                (REFRESH_EFF_AREA, (), False),
            ]
        )

    async def upsert_entities(self, entities: Sequence[RegistryEntity], source: str = HA_SOURCE) -> None:
        await self._transaction(
            [(UPSERT_ENTITY, [(*entity_row(e), source) for e in entities], True), (REFRESH_EFF_AREA, (), False)]
        )

    async def upsert_source_entities(self, source: str, entities: Sequence[RegistryEntity]) -> None:
        await self.upsert_entities(entities, source)

    async def put_value(self, key: str, value: str) -> None:
        """A small durable value of another component (one row, one transaction)."""
        await self._transaction([(UPSERT_VALUE, (key, value), False)])

    async def get_value(self, key: str) -> str | None:
        rows = await self._fetch("kv", "SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def delete_entities(self, entity_ids: Sequence[str]) -> None:
        """Removed from HA's registry: the row goes (or stays state-only while HA still reports a state)."""
        rows = [(i,) for i in entity_ids]
        await self._transaction([(UNREGISTER_ENTITY, rows, True), (DROP_EMPTY_ENTITY, rows, True)])

    async def prune_state_only(self, is_live: Callable[[str], bool]) -> int:
        """After a reconnect: drop Home Assistant entities we only knew by their state and HA no longer has
        (a snapshot does not report what disappeared while we were away)."""
        rows = await self._fetch(
            "prune", "SELECT entity_id FROM entities WHERE in_registry = 0 AND source = ?", (HA_SOURCE,)
        )
        gone = [(r[0],) for r in rows if not is_live(r[0])]
        if gone:
            await self._transaction([("DELETE FROM entities WHERE entity_id = ? AND in_registry = 0", gone, True)])
            self._latest.forget(g[0] for g in gone)
        return len(gone)

    # --- latest states, write-coalesced ---------------------------------------------------------------

    def note_state(self, change: StateChange) -> None:
        """Pipeline listener: remember the newest state in memory; ``flush_states`` writes it when due."""
        self._latest.note(change)

    def stage_value(self, key: str, value: str) -> None:
        """Like ``put_value``, but written with the next periodic flush (and on stop), in its transaction."""
        self._latest.stage_value(key, value)

    @property
    def pending_states(self) -> int:
        """States and values held in memory that the file does not have yet."""
        return len(self._latest)

    @property
    def pending_dropped(self) -> int:
        return self._latest.dropped

    async def flush_states(self, *, final: bool = False) -> int:
        """Write what is due (everything when ``final``: on stop) in one transaction; the number of rows."""
        if self._writer is None or not (self._latest.due or final):
            return 0
        writes = self._latest.take(final=final)
        if not writes:
            return 0
        removed = [(entity_id,) for entity_id in writes.removed]
        statements: list[tuple[Any, ...]] = []
        if writes.states:
            statements.append((UPSERT_STATE, list(writes.states.values()), True, state_row))
        if removed:
            statements += [(CLEAR_STATE, removed, True), (DROP_EMPTY_ENTITY, removed, True)]
        if writes.values:
            statements.append((UPSERT_VALUE, list(writes.values.items()), True))
        try:
            await self._transaction(statements)
        except sqlite3.Error:
            self._latest.restore(writes)
            raise
        self._latest.written(writes)
        self.states_flushed += len(writes.states) + len(removed)
        return len(writes)

    # --- reads (the query-only connection) ------------------------------------------------------------

    async def _fetch(self, name: str, sql: str, params: Sequence[Any], *, inline: bool = False) -> list[Any]:
        """Run one read. ``inline``: bounded queries (a primary key, a page of at most ``INLINE_MAX_ROWS``
        by an index) run right in the event loop, ~0.1-1 ms: a hop to the reader thread cost more than the
        query (1.8 ms median, 10 ms p99 measured, from GIL hand-offs), and on a busy machine the wait for that
        thread to be scheduled was the tail. The inline connection never waits for a lock (timeout 0): when
        SQLite says busy, the query goes to the reader thread."""
        started = time.perf_counter()
        rows: list[Any] | None = None
        if inline and self._inline is not None:
            try:
                rows = self._inline.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                rows = None
        if rows is None:
            conn = self._reader
            if conn is None:
                raise RuntimeError("metadata store is not open")
            async with conn.execute(sql, params) as cur:
                rows = list(await cur.fetchall())
        self.query_times.add(name, time.perf_counter() - started)
        return rows

    async def entity(self, entity_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("entity", ENTITY_SELECT + " WHERE e.entity_id = ?", (entity_id,), inline=True)
        return entity_dict(rows[0]) if rows else None

    async def entities(self, query: EntityQuery) -> list[dict[str, Any]]:
        sql, params = entity_query_sql(query)
        inline = query.q is None and query.limit <= INLINE_MAX_ROWS  # a substring search scans: not in the loop
        return [entity_dict(r) for r in await self._fetch("entities", sql, params, inline=inline)]

    async def devices(
        self, *, area_id: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        sql, params = device_query_sql(area_id, after, limit)
        rows = await self._fetch("devices", sql, params, inline=limit <= INLINE_MAX_ROWS)
        return [device_dict(r) for r in rows]

    async def areas(self, *, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = AREA_SELECT + (" WHERE a.area_id > ?" if after is not None else "") + " ORDER BY a.area_id LIMIT ?"
        params: list[Any] = [after, limit] if after is not None else [limit]
        return [area_dict(r) for r in await self._fetch("areas", sql, params, inline=limit <= INLINE_MAX_ROWS)]

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
            registry_entity(r)
            for r in await self._fetch(
                "load", f"SELECT entity_id, {REGISTRY_COLUMNS} FROM entities WHERE in_registry = 1", ()  # noqa: S608
            )
        ]
        return areas, devices, entities


__all__ = ["EntityQuery", "MetadataStore", "QueryTimes"]
