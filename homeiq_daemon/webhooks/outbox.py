"""The webhook outbox: one row per delivery, in its own SQLite file (``webhooks.db`` in the state directory).

A row is written when a rule fires, before the first attempt, and keeps the exact body bytes that every
attempt signs and sends. Its ``id`` is the ``webhook-id`` header: stable across retries and restarts, so
a receiver can drop repeats. Status moves ``pending`` -> ``delivered`` | ``rejected`` (a final 4xx) |
``dead`` (retried past the horizon, or its target left the config). Finished rows are pruned after
``webhooks.keep_days``; ``seq`` keeps the order in which rules fired.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from homeiq_daemon.runtime.sqlite import open_db, open_readonly

PENDING = "pending"
DELIVERED = "delivered"
REJECTED = "rejected"
DEAD = "dead"
FAILED_STATUSES = (REJECTED, DEAD)

MIGRATIONS = (
    """
    CREATE TABLE deliveries (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT    NOT NULL UNIQUE,
        rule            TEXT    NOT NULL,
        target          TEXT    NOT NULL,
        entity_id       TEXT    NOT NULL,
        body            BLOB    NOT NULL,
        received_ns     INTEGER NOT NULL,
        created_ns      INTEGER NOT NULL,
        status          TEXT    NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ns INTEGER NOT NULL,
        last_status     INTEGER,
        last_error      TEXT,
        finished_ns     INTEGER
    );
    CREATE INDEX deliveries_pending ON deliveries (seq) WHERE status = 'pending';
    CREATE INDEX deliveries_finished ON deliveries (finished_ns) WHERE finished_ns IS NOT NULL;
    """,
)

_COLUMNS = (
    "seq, id, rule, target, entity_id, body, received_ns, created_ns, status, attempts, next_attempt_ns, "
    "last_status, last_error, finished_ns"
)
_MAX_ERROR_CHARS = 300
_INSERT = (
    "INSERT INTO deliveries (id, rule, target, entity_id, body, received_ns, created_ns, next_attempt_ns) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: str
    rule: str
    target: str
    entity_id: str
    body: bytes
    received_ns: int
    created_ns: int


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    rule: str
    target: str
    entity_id: str
    body: bytes
    received_ns: int
    created_ns: int
    status: str
    attempts: int
    next_attempt_ns: int
    last_status: int | None
    last_error: str | None
    finished_ns: int | None


def _row(values: Sequence[object]) -> OutboxRow:
    return OutboxRow(*values)  # type: ignore[arg-type]  # columns in _COLUMNS order, types from the schema


class Outbox:
    """Async access for the daemon. All writes go through one lock, so multi-statement transactions from
    concurrent delivery lanes never interleave on the shared connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._conn = await open_db(self.path, MIGRATIONS)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("outbox is not open")
        return self._conn

    async def add(self, deliveries: Sequence[NewDelivery]) -> None:
        """Insert in one transaction (their ``seq`` follows the order given)."""
        rows = [
            (d.id, d.rule, d.target, d.entity_id, d.body, d.received_ns, d.created_ns, d.created_ns) for d in deliveries
        ]
        async with self._lock:
            conn = self.conn
            if len(rows) == 1:  # one statement is its own transaction: one thread hop instead of three
                await conn.execute(_INSERT, rows[0])
                return
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.executemany(_INSERT, rows)
                await conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise

    async def pending(self) -> list[OutboxRow]:
        async with self.conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE status = 'pending' ORDER BY seq"  # noqa: S608 - constants
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def record_attempt(
        self, delivery_id: str, *, attempts: int, next_attempt_ns: int, last_status: int | None, last_error: str
    ) -> None:
        async with self._lock:
            await self.conn.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt_ns = ?, last_status = ?, last_error = ? WHERE id = ?",
                (attempts, next_attempt_ns, last_status, last_error[:_MAX_ERROR_CHARS], delivery_id),
            )

    async def finish(
        self,
        delivery_id: str,
        status: str,
        *,
        attempts: int,
        last_status: int | None,
        last_error: str | None,
        finished_ns: int,
    ) -> None:
        async with self._lock:
            await self.conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, last_status = ?, last_error = ?, finished_ns = ? "
                "WHERE id = ?",
                (
                    status,
                    attempts,
                    last_status,
                    None if last_error is None else last_error[:_MAX_ERROR_CHARS],
                    finished_ns,
                    delivery_id,
                ),
            )

    async def prune(self, finished_before_ns: int) -> int:
        async with self._lock:
            cur = await self.conn.execute(
                "DELETE FROM deliveries WHERE finished_ns IS NOT NULL AND finished_ns < ?", (finished_before_ns,)
            )
            return int(cur.rowcount or 0)


def read_log(path: Path, *, limit: int = 50, failed_only: bool = False) -> list[OutboxRow]:
    """Newest deliveries first, for ``homeiq webhooks log`` (read-only, safe beside the daemon)."""
    conn = open_readonly(path)
    try:
        where = "WHERE status IN ('rejected', 'dead') OR (status = 'pending' AND attempts > 0)" if failed_only else ""
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries {where} ORDER BY seq DESC LIMIT ?",  # noqa: S608 - constants
            (limit,),
        ).fetchall()
    finally:
        conn.close()
    return [_row(r) for r in rows]
