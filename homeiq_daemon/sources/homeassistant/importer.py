"""One-shot import of Home Assistant's recorder history (``homeiq import-history``), resumable.

The work is fixed at the first run: the entity list (exported entities matching the globs), ``since`` and
``until``; it is walked entity chunk by entity chunk, each in adaptive time windows (history.py), and after
each answer is written the position is saved to a checkpoint file in the state directory. A run with the
same arguments after an interruption (Ctrl-C, a lost connection) picks up there; one after a finished import
starts afresh (rewriting points is idempotent: InfluxDB keeps one point per series and timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.model import EntityState
from homeiq_daemon.sources.homeassistant import history
from homeiq_daemon.sources.homeassistant import messages as hamessages
from homeiq_daemon.sources.homeassistant.backfill import HistoryFetcher

CHECKPOINT_FILE = "import-history.json"
_OVERLAP_NS = 1_000_000
_MIN_CHUNKS = 8

Call = Callable[..., Awaitable[Any]]
Write = Callable[[list[EntityState]], Awaitable[int]]


@dataclass
class ImportPlan:
    key: str
    entities: list[str]
    since_ns: int
    until_ns: int
    chunk: int = 0
    next_start_ns: int | None = None
    states: int = 0
    points: int = 0
    done: bool = False
    resumed: bool = False
    earliest_ns: dict[str, int] = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        return 0 if not self.entities else (len(self.entities) - 1) // self._size + 1

    _size: int = 100

    def fraction(self) -> float:
        """Share of the work done: chunks done plus the time covered in the current one."""
        if not self.entities or self.until_ns <= self.since_ns:
            return 1.0
        inside = 0.0
        if self.next_start_ns is not None:
            inside = (self.next_start_ns - self.since_ns) / (self.until_ns - self.since_ns)
        return min(1.0, (self.chunk + max(0.0, inside)) / max(1, self.chunks))


def args_key(since: str, until: str | None, globs: list[str], sink: str) -> str:
    raw = orjson.dumps({"since": since, "until": until, "globs": sorted(globs), "sink": sink})
    return hashlib.sha256(raw).hexdigest()[:16]


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, key: str) -> ImportPlan | None:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(raw, dict) or raw.get("key") != key or raw.get("done"):
            return None
        try:
            return ImportPlan(
                key=key,
                entities=[str(e) for e in raw["entities"]],
                since_ns=int(raw["since_ns"]),
                until_ns=int(raw["until_ns"]),
                chunk=int(raw["chunk"]),
                next_start_ns=None if raw.get("next_start_ns") is None else int(raw["next_start_ns"]),
                states=int(raw.get("states", 0)),
                points=int(raw.get("points", 0)),
                resumed=True,
                _size=int(raw["chunk_size"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, plan: ImportPlan) -> None:
        body = orjson.dumps(
            {
                "key": plan.key,
                "entities": plan.entities,
                "since_ns": plan.since_ns,
                "until_ns": plan.until_ns,
                "chunk": plan.chunk,
                "next_start_ns": plan.next_start_ns,
                "states": plan.states,
                "points": plan.points,
                "done": plan.done,
                "chunk_size": plan._size,
            }
        )
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


async def exported_entities(call: Call, accepts: Callable[[str], bool], globs: list[str]) -> list[str]:
    """Entity ids HA knows now that the daemon exports (include/exclude) and that match any glob."""
    raw = await call("get_states", timeout_s=120.0)
    found = []
    for item in raw if isinstance(raw, list) else []:
        try:
            entity_id = hamessages.parse_state(item).entity_id
        except Exception:  # noqa: BLE001,S112 - a malformed state names no entity to import
            continue
        if accepts(entity_id) and (not globs or any(fnmatch.fnmatchcase(entity_id, g) for g in globs)):
            found.append(entity_id)
    return sorted(found)


def chunk_size(entities: int, settings: BackfillSettings) -> int:
    """Entities per request: at most the setting, and small enough for a few chunks, so HA prepares the next
    answer while this one is written (requests are pipelined one ahead)."""
    return max(1, min(settings.entities_per_request, -(-entities // _MIN_CHUNKS)))


async def _walk(
    fetcher: HistoryFetcher, chunks: list[list[str]], plan: ImportPlan, settings: BackfillSettings
) -> AsyncGenerator[tuple[int, object, int, bool], None]:
    """``(chunk, answer, window_end, last_of_chunk)`` from the plan's position to its end, one request ahead
    (across chunk boundaries too): at most two answers in memory."""
    sizer = history.sizer_for(settings)

    def ask(chunk: int, start: int) -> tuple[int, int, bool, asyncio.Task[object]]:
        end = sizer.next_end(start, plan.until_ns)
        return chunk, end, end >= plan.until_ns, asyncio.ensure_future(fetcher.fetch(chunks[chunk], start, end))

    first = plan.next_start_ns if plan.next_start_ns is not None else plan.since_ns
    pending: tuple[int, int, bool, asyncio.Task[object]] | None = ask(plan.chunk, first)
    try:
        while pending is not None:
            chunk, end, last, task = pending
            answer = await task
            if not last:
                sizer.observe(sum(len(v) for v in answer.values()) if isinstance(answer, dict) else 0)
                pending = ask(chunk, end - _OVERLAP_NS)
            elif chunk + 1 < len(chunks):
                sizer = history.sizer_for(settings)
                pending = ask(chunk + 1, plan.since_ns)
            else:
                pending = None
            yield chunk, answer, end, last
    finally:
        if pending is not None and not pending[3].done():
            pending[3].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending[3]


async def run_import(
    call: Call,
    plan: ImportPlan,
    settings: BackfillSettings,
    write: Write,
    checkpoint: Checkpoint,
    *,
    on_progress: Callable[[ImportPlan], None] | None = None,
    save_every_s: float = 1.0,
) -> ImportPlan:
    """Walk the plan from its position; ``write`` gets each answer's states and returns the points written."""
    fetcher = HistoryFetcher(call, settings)
    chunks = list(history.chunks(plan.entities, plan._size))
    saved_at = 0.0
    # One write in flight while the next answer is parsed and mapped; the position is saved only once the
    # write of everything before it was acknowledged.
    writing: tuple[asyncio.Task[int], int, int, bool, int] | None = None

    async def settle() -> None:
        nonlocal writing, saved_at
        if writing is None:
            return
        task, chunk, window_end, last, count = writing
        writing = None
        plan.points += await task
        plan.states += count
        plan.chunk, plan.next_start_ns = (chunk + 1, None) if last else (chunk, window_end - _OVERLAP_NS)
        if last or time.monotonic() - saved_at >= save_every_s:
            checkpoint.save(plan)
            saved_at = time.monotonic()
        if on_progress is not None:
            on_progress(plan)

    try:
        if plan.chunk < len(chunks):
            walk = _walk(fetcher, chunks, plan, settings)
            async with contextlib.aclosing(walk):
                async for chunk, answer, window_end, last in walk:
                    states = list(history.parse_answer(answer))
                    del answer
                    for state in states:
                        known = plan.earliest_ns.get(state.entity_id)
                        if known is None or state.last_updated_ns < known:
                            plan.earliest_ns[state.entity_id] = state.last_updated_ns
                    task = asyncio.ensure_future(write(states))
                    await settle()
                    writing = (task, chunk, window_end, last, len(states))
                    del states
            await settle()
    finally:
        if writing is not None:
            writing[0].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writing[0]
    plan.done = True
    with contextlib.suppress(OSError):
        checkpoint.save(plan)
    return plan
