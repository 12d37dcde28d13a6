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
from homeiq_daemon.model import MIN_TIME_NS, ns_to_iso, time_ns_in_range
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.sqlite import open_db, open_readonly
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
from homeiq_daemon.sinks.lineparse import LineProtocolError, parse_line, split_lines

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


def _rows_from_body(body: bytes, rejected: list[tuple[str, str]]) -> list[tuple[str, tuple[Any, ...]]]:
    """(line, row) to upsert; each line that cannot be stored goes to ``rejected`` with its reason instead."""
    rows: list[tuple[str, tuple[Any, ...]]] = []
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise RejectedBatchError(f"history store: batch is not UTF-8 ({exc.reason})", status=0) from None
    for line in split_lines(text):
        if not line or line.startswith("#"):
            continue
        try:
            row = _row_from_line(line)
        except (LineProtocolError, OverflowError, TypeError, ValueError) as exc:
            # A time SQLite's INTEGER cannot hold (a year-9999 state), an integer field orjson cannot
            # encode, a line that does not parse: that line only, never the batch.
            rejected.append((line, f"history store: {type(exc).__name__}: {exc}"))
            continue
        rows.append((line, row))
    return rows


def _row_from_line(line: str) -> tuple[Any, ...]:
    parsed = parse_line(line)
    if parsed.time_ns is not None and not time_ns_in_range(parsed.time_ns):
        raise OverflowError(f"time {parsed.time_ns} is outside the storable years 1677-2262")
    domain = parsed.tags.get("domain")
    object_id = parsed.tags.get("entity_id")
    entity_id = f"{domain}.{object_id}" if domain and object_id else parsed.measurement
    value = parsed.fields.get("value")
    state = parsed.fields.get("state")
    return (
        entity_id,
        parsed.measurement,
        parsed.time_ns if parsed.time_ns is not None else time.time_ns(),
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
        state if isinstance(state, str) else None,
        orjson.dumps({"tags": parsed.tags, "fields": parsed.fields}).decode(),
    )


class HistoryStore:
    """A sink with the InfluxWriter's ``write`` signature, backed by SQLite."""

    def __init__(
        self, path: Path, *, retention_days: float, stats: Stats | None = None, dead_letters: DeadLetters | None = None
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._stats = stats
        self._dead_letters = dead_letters
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
        rejected: list[tuple[str, str]] = []
        rows = _rows_from_body(body, rejected)
        if rejected:
            self._reject(rejected)
        try:
            await self._conn.execute("BEGIN")
            await self._conn.executemany(_UPSERT, [row for _, row in rows])
            await self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # Disk full, I/O error, locked: the batch goes back to the delivery loop and waits.
            await self._rollback()
            raise TransientSinkError(f"history store: {exc}") from None
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:  # a bad row, a corrupt page
            await self._rollback()
            written = await self._write_one_by_one(rows, exc)
            return WriteResult(written, len(rows) - written + len(rejected))
        return WriteResult(len(rows), len(rejected))

    async def _write_one_by_one(self, rows: list[tuple[str, tuple[Any, ...]]], first: BaseException) -> int:
        """The batch failed for its content: store the rows that can be stored, each on its own. When none
        can (a corrupt page, a broken file), raise RejectedBatchError: the delivery loop sets the batch aside."""
        assert self._conn is not None
        written = 0
        failed: list[tuple[str, str]] = []
        for line, row in rows:
            try:
                await self._conn.execute(_UPSERT, row)
            except sqlite3.OperationalError as exc:
                raise TransientSinkError(f"history store: {exc}") from None
            except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
                failed.append((line, f"history store: {type(exc).__name__}: {exc}"))
                continue
            written += 1
        if not written:
            raise RejectedBatchError(f"history store: {type(first).__name__}: {first}", status=0)
        if failed:
            self._reject(failed)
        return written

    def _reject(self, rejected: list[tuple[str, str]]) -> None:
        if self._stats is not None:
            self._stats.points_dropped["rejected"] += len(rejected)
        log.warning("history.lines_rejected", lines=len(rejected), reason=rejected[0][1][:300])
        if self._dead_letters is None:
            return
        try:
            for line, reason in rejected:
                self._dead_letters.add(line, reason)
        except OSError as exc:
            log.error("history.dead_letter_failed", error=str(exc)[:200])
            return
        if self._stats is not None:
            self._stats.dead_letter_points += len(rejected)

    async def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                await self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("history.rollback_failed")

    async def apply_retention(self) -> int:
        """Delete rows older than ``retention_days`` before the newest stored point or now, whichever is
        earlier: a wall clock that jumps ahead (a Pi without a real-time clock booting with a wrong date)
        must not empty the history. Only a clock behind the data shortens what is deleted."""
        if self._conn is None:
            return 0
        async with self._conn.execute("SELECT MAX(time_ns) FROM points") as cur:
            newest_row = await cur.fetchone()
        newest = newest_row[0] if newest_row is not None else None
        if newest is None:
            return 0
        now_ns = time.time_ns()
        retention_ns = int(self.retention_days * 86_400 * 1_000_000_000)
        if now_ns - newest > retention_ns:
            log.warning(
                "history.clock_ahead_of_data",
                newest_point=ns_to_iso(newest),
                now=ns_to_iso(now_ns),
                action="retention counts from the newest stored point, not from the wall clock",
            )
        cutoff = max(MIN_TIME_NS, min(now_ns, newest) - retention_ns)
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
