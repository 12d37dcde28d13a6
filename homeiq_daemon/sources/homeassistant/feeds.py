"""How the HA source gets states on one connection: a snapshot, then every change, with nothing in between lost.

* ``entities`` (the default): ``subscribe_entities``, the compressed stream HA's frontend uses. Its first
  event is the snapshot; later events are diffs (``compressed.py``). The snapshot is submitted from the
  reader itself, before any diff after it, so the order is exactly HA's.
* ``state_changed``: ``subscribe_events state_changed``, then ``get_states`` as the snapshot (subscribing first
  means no change falls between the two; the tracker sorts out the overlap by ``last_updated``).

Both give the same states, hence the same points (docs/performance.md compares their cost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import EntityState, Origin
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.sources.homeassistant import messages as hamessages
from homeiq_daemon.sources.homeassistant.compressed import EntityStream

if TYPE_CHECKING:
    from homeiq_daemon.sources.homeassistant.connection import HAConnection

SNAPSHOT_TIMEOUT_S = 120.0


class Feed(Protocol):
    async def open(self, conn: HAConnection, origin: Origin) -> tuple[list[EntityState], int]:
        """Subscribe and take the snapshot: (states, points the snapshot emitted)."""
        ...


class StateChangedFeed:
    def __init__(self, pipeline: Pipeline, skipped: Callable[[str], None]) -> None:
        self._pipeline = pipeline
        self._skipped = skipped

    async def open(self, conn: HAConnection, origin: Origin) -> tuple[list[EntityState], int]:
        await conn.subscribe("state_changed", self._on_event, on_change=self._pipeline.submit)
        raw_states = await conn.call("get_states", timeout_s=SNAPSHOT_TIMEOUT_S)
        states = []
        for raw in raw_states if isinstance(raw_states, list) else []:
            try:
                states.append(hamessages.parse_state(raw))
            except ProtocolError as exc:
                self._skipped(f"get_states: {exc}")
        del raw_states  # the decoded frame: only the parsed states are kept
        return states, self._pipeline.submit_snapshot(states, origin)

    def _on_event(self, event: dict[str, Any]) -> None:
        try:
            change = hamessages.parse_state_changed(event.get("data"), "live")
        except ProtocolError as exc:
            self._skipped(str(exc))
            return
        self._pipeline.submit(change)


class EntitiesFeed:
    def __init__(self, pipeline: Pipeline, skipped: Callable[[str], None]) -> None:
        self._pipeline = pipeline
        self._skipped = skipped
        self._stream = EntityStream()
        self._origin: Origin = "snapshot"
        self._snapshot: asyncio.Future[tuple[list[EntityState], int]] | None = None

    async def open(self, conn: HAConnection, origin: Origin) -> tuple[list[EntityState], int]:
        self._origin = origin
        self._snapshot = asyncio.get_running_loop().create_future()
        await conn.subscribe("", self._on_event, command="subscribe_entities")
        async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
            return await self._snapshot

    def _on_event(self, event: dict[str, Any]) -> None:
        stream = self._stream
        snapshot = self._snapshot
        if snapshot is not None and not snapshot.done():
            states = stream.initial(event)
            snapshot.set_result((states, self._pipeline.submit_snapshot(states, self._origin)))
        else:
            submit = self._pipeline.submit
            for change in stream.changes(event):
                submit(change)
        for reason in stream.malformed:
            self._skipped(reason)


def make_feed(kind: str, pipeline: Pipeline, skipped: Callable[[str], None]) -> Feed:
    return EntitiesFeed(pipeline, skipped) if kind == "entities" else StateChangedFeed(pipeline, skipped)
