"""Embedded history: where points go when no InfluxDB is configured (SQLite under the state directory).

It takes the same line-protocol batches as the InfluxDB writer, so the pipeline does not care which sink it
feeds. Rows are keyed by (entity, measurement, time): writing a batch twice leaves one row, like InfluxDB.
Old rows are deleted after ``history.retention_days``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from homeiq_daemon.errors import RejectedBatchError, TransientSinkError
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.sqlite import open_db, open_readonly
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.lineprotocol import LineProtocolError, parse_line, split_lines

log = get_logger("homeiq.history")

MIGRATIONS = (
    """
    CREATE TABLE points (
        entity_id   TEXT    NOT NULL,
        measurement TEXT    NOT NULL,
        time_ns     INTEGER NOT NULL,
        value       REAL,
        state       TEXT,
        fields      TEXT    NOT NULL,
        PRIMARY KEY (entity_id, time_ns, measurement)
    ) WITHOUT ROWID;
    CREATE INDEX points_time ON points (time_ns);
    """,
)

_UPSERT = (
    "INSERT OR REPLACE INTO points (entity_id, measurement, time_ns, value, state, fields) VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    entity_id: str
    measurement: str
    time_ns: int
    value: float | None
    state: str | None
    fields: dict[str, Any]


def _rows_from_body(body: bytes) -> tuple[list[tuple[Any, ...]], int]:
    rows: list[tuple[Any, ...]] = []
    bad = 0
    for line in split_lines(body.decode()):
        if not line or line.startswith("#"):
            continue
        try:
            parsed = parse_line(line)
        except LineProtocolError:
            bad += 1
            continue
        domain = parsed.tags.get("domain")
        object_id = parsed.tags.get("entity_id")
        entity_id = f"{domain}.{object_id}" if domain and object_id else parsed.measurement
        value = parsed.fields.get("value")
        state = parsed.fields.get("state")
        rows.append(
            (
                entity_id,
                parsed.measurement,
                parsed.time_ns if parsed.time_ns is not None else time.time_ns(),
                float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
                state if isinstance(state, str) else None,
                orjson.dumps({"tags": parsed.tags, "fields": parsed.fields}).decode(),
            )
        )
    return rows, bad


class HistoryStore:
    """A sink with the InfluxWriter's ``write`` signature, backed by SQLite."""

    def __init__(self, path: Path, *, retention_days: float) -> None:
        self.path = path
        self.retention_days = retention_days
        self._conn: aiosqlite.Connection | None = None

    @property
    def describe(self) -> str:
        return f"embedded history store {self.path}"

    async def start(self) -> None:
        self._conn = await open_db(self.path, MIGRATIONS)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def ensure_database(self) -> None:
        return None

    async def ping(self) -> bool:
        return self._conn is not None

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        if self._conn is None:
            raise TransientSinkError("history store is not open")
        rows, bad = _rows_from_body(body)
        try:
            await self._conn.execute("BEGIN")
            await self._conn.executemany(_UPSERT, rows)
            await self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # Disk full, I/O error, locked: the batch goes back to the delivery loop and waits.
            await self._rollback()
            raise TransientSinkError(f"history store: {exc}") from None
        except sqlite3.DatabaseError as exc:
            await self._rollback()
            raise RejectedBatchError(f"history store: {exc}", status=0) from None
        return WriteResult(len(rows), bad)

    async def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                await self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("history.rollback_failed")

    async def apply_retention(self) -> int:
        if self._conn is None:
            return 0
        cutoff = time.time_ns() - int(self.retention_days * 86_400 * 1e9)
        cur = await self._conn.execute("DELETE FROM points WHERE time_ns < ?", (cutoff,))
        return int(cur.rowcount or 0)

    async def query(self, entity_id: str, start_ns: int, end_ns: int, limit: int = 10_000) -> list[HistoryRow]:
        if self._conn is None:
            return []
        async with self._conn.execute(
            "SELECT entity_id, measurement, time_ns, value, state, fields FROM points "
            "WHERE entity_id = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns LIMIT ?",
            (entity_id, start_ns, end_ns, limit),
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]


def _row(r: Any) -> HistoryRow:
    fields = orjson.loads(r[5]).get("fields", {})
    return HistoryRow(r[0], r[1], r[2], r[3], r[4], fields)


def read_history(
    path: Path, entity_id: str, start_ns: int, end_ns: int, limit: int = 10_000, *, newest_first: bool = False
) -> list[HistoryRow]:
    """Synchronous read for the CLI (the daemon may be running; WAL makes that safe): the oldest ``limit``
    points of the window, or with ``newest_first`` the newest ``limit``, newest first."""
    conn = open_readonly(path)
    order = "DESC" if newest_first else "ASC"
    try:
        cur = conn.execute(
            "SELECT entity_id, measurement, time_ns, value, state, fields FROM points "  # noqa: S608 - order is a constant
            f"WHERE entity_id = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns {order} LIMIT ?",
            (entity_id, start_ns, end_ns, limit),
        )
        return [_row(r) for r in cur.fetchall()]
    finally:
        conn.close()
