"""Opening SQLite files the same way everywhere: WAL, pragmas, 0640 files, migrations by user_version.

Files are readable by the service's group (never by others) so ``homeiq history``/``devices``/``entities``
run by a member of group homeiq can read them (docs/systemd.md)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from homeiq_daemon.errors import ConfigError, HomeIQError, StateDirError

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # with WAL: durable across process crashes, at most the last commits lost on power cut
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-2048",  # KiB: 2 MiB page cache (a 5,000-entity store is ~1 MiB; the OS caches too)
)


def casefold(text: str | bytes | float | None) -> str | bytes | float | None:
    """SQL ``casefold(x)``: Unicode case folding (SQLite's own ``lower()`` folds ASCII letters only, so
    "Übersicht" would never match "übersicht")."""
    return text.casefold() if isinstance(text, str) else text


def add_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the queries use, on a connection of the standard library."""
    conn.create_function("casefold", 1, casefold, deterministic=True)


async def add_functions_async(conn: aiosqlite.Connection) -> None:
    """``add_functions`` on an aiosqlite connection (registered in its thread)."""
    await conn.create_function("casefold", 1, casefold, deterministic=True)


def _unusable(path: Path, exc: sqlite3.Error) -> HomeIQError:
    """A database file that cannot be used, as one line naming it (never a traceback)."""
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).replace("-", ""):
        return StateDirError(f"state_dir: {path} is read-only for this user ({exc})")
    if isinstance(exc, sqlite3.OperationalError):
        return StateDirError(f"state_dir: cannot open {path}: {exc}")
    return ConfigError(
        f"state_dir: {path} is not a usable SQLite database ({exc}); it is left as it is: move it away "
        f"(e.g. to {path}.damaged) to start with an empty one"
    )


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o640)
    os.close(fd)
    os.chmod(path, 0o640)  # SQLite gives the -wal and -shm files the database file's mode


async def open_db(path: Path, migrations: Sequence[str]) -> aiosqlite.Connection:
    """Open (creating with mode 0640) and migrate: ``migrations[i]`` takes user_version i to i+1."""
    try:
        _create_private(path)
    except OSError as exc:
        raise StateDirError(f"state_dir: cannot create {path}: {exc.strerror or exc}") from None
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await add_functions_async(conn)
        for pragma in PRAGMAS:
            await conn.execute(pragma)
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for index in range(version, len(migrations)):
            await conn.executescript(f"BEGIN;\n{migrations[index]}\nPRAGMA user_version={index + 1};\nCOMMIT;")
    except sqlite3.Error as exc:
        await conn.close()
        raise _unusable(path, exc) from None
    except BaseException:
        await conn.close()
        raise
    return conn


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection for the CLI; safe beside the running daemon thanks to WAL."""
    if not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA busy_timeout=5000")
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError:
        # A reader that may not write the directory (a member of the service's group) cannot create the
        # -shm file that WAL needs. With no -wal file there is no writer: read the file as it stands.
        conn.close()
        if Path(f"{path}-wal").exists():
            raise
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=5.0)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _unusable(path, exc) from None
    add_functions(conn)
    return conn
