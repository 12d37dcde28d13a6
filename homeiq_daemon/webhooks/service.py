"""The webhook component the app starts and stops: pipeline listener -> rules -> outbox -> dispatcher.

``on_change`` is a pipeline listener: synchronous and cheap (rule matching plus one JSON encode per match),
it never awaits, so a dead receiver or a slow disk cannot slow the Home Assistant reader. Matches go to a
bounded in-memory queue; one writer task commits them to the outbox in batches and hands them to the
dispatcher, which attempts each at once. At stop, queued matches are still committed, attempts on the wire
get a short grace, and everything unfinished stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from homeiq_daemon.config.webhooks import WebhookSettings
from homeiq_daemon.errors import StateDirError
from homeiq_daemon.model import StateChange
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.webhooks.client import WebhookClient
from homeiq_daemon.webhooks.dispatcher import Dispatcher, Work
from homeiq_daemon.webhooks.outbox import NewDelivery, Outbox
from homeiq_daemon.webhooks.payload import build_body, new_delivery_id
from homeiq_daemon.webhooks.rules import AreaLookup, Match, RuleEngine
from homeiq_daemon.webhooks.stats import WebhookStats

log = get_logger("homeiq.webhooks")
STOP_GRACE_S = 2.0


class _HasPlaces(Protocol):
    @property
    def places(self) -> Mapping[str, Any]:  # entity_id -> EntityPlace(area_id, area_name, ...); replaced on sync
        ...


def areas_from(sync: _HasPlaces) -> AreaLookup:
    """Rule ``areas`` match the registry's area id or name (lower case), as the registry sync knows it now."""

    def lookup(entity_id: str) -> tuple[str, ...]:
        place = sync.places.get(entity_id)
        if place is None or place.area_id is None:
            return ()
        return (str(place.area_id).lower(), str(place.area_name or "").lower())

    return lookup


class WebhookService:
    def __init__(
        self,
        settings: WebhookSettings,
        db_path: Path,
        *,
        area_of: AreaLookup | None = None,
        stats: WebhookStats | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats or WebhookStats()
        self.outbox = Outbox(db_path)
        self.client = WebhookClient()
        self.dispatcher = Dispatcher(settings, self.outbox, self.client, self.stats)
        self._area_of = area_of
        self._engine: RuleEngine | None = None
        self._queue: deque[NewDelivery] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._dropping = False

    def set_rules(self, settings: WebhookSettings) -> None:
        """New rules from here on (a SIGHUP reload); targets and the outbox stay as they are."""
        if self._engine is None:
            return
        engine = self._engine
        self.settings = settings
        self._engine = RuleEngine(settings, engine.emit, engine.call_later, self.stats, area_of=self._area_of)

    async def start(self) -> None:
        try:
            await self.outbox.open()
        except (sqlite3.Error, OSError) as exc:
            # A damaged or unwritable outbox: one clear line and EX_CANTCREAT, not a traceback.
            raise StateDirError(f"webhooks: cannot open the outbox {self.outbox.path}: {exc}") from None
        await self.client.start()
        loop = asyncio.get_running_loop()
        self._engine = RuleEngine(self.settings, self._accept, loop.call_later, self.stats, area_of=self._area_of)
        resumed = await self.outbox.pending()
        for row in resumed:
            self.dispatcher.enqueue(Work.from_row(row))
        log.info(
            "webhook.started",
            rules=len(self._engine.rules),
            targets=len(self.settings.all_targets),
            resumed=len(resumed),
            outbox=str(self.outbox.path),
        )
        if self._engine.rules and any(r.areas for r in self._engine.rules) and self._area_of is None:
            log.warning("webhook.areas_unavailable", hint="rules with areas match only when area data is known")

    # --- the pipeline side (synchronous, never awaits) ------------------------------------------------

    def on_change(self, change: StateChange) -> None:
        if self._engine is not None:
            self._engine.handle(change, time.time_ns())

    def _accept(self, match: Match) -> None:
        if len(self._queue) + self.stats.pending >= self.settings.max_pending:
            self.stats.deliveries["dropped"] += 1
            if not self._dropping:
                self._dropping = True
                log.warning("webhook.outbox_full", max_pending=self.settings.max_pending, rule=match.rule)
            return
        self._dropping = False
        delivery_id = new_delivery_id(match.fired_ns)
        self._queue.append(
            NewDelivery(
                delivery_id,
                match.rule,
                match.target,
                match.change.entity_id,
                build_body(match, delivery_id),
                match.received_ns,
                match.fired_ns,
            )
        )
        self._wake.set()

    # --- the async side -----------------------------------------------------------------------------

    async def run_writer(self) -> None:
        """The supervised task that commits matches to the outbox and hands them to the dispatcher."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._commit_queued()
        await self._commit_queued()

    async def _commit_queued(self) -> None:
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            try:
                await self.outbox.add(batch)
            except sqlite3.Error as exc:
                # Disk full or broken: these matches are dropped by policy (counted, logged), not retried
                # in a loop that would hold memory while the disk stays broken.
                self.stats.deliveries["dropped"] += len(batch)
                log.error("webhook.outbox_write_failed", error=str(exc), dropped=len(batch))
                continue
            for new in batch:
                work = Work(new.id, new.rule, new.target, new.body, new.received_ns, new.created_ns, 0, new.created_ns,
                            new.entity_id)  # fmt: skip
                self.dispatcher.enqueue(work)

    async def prune(self) -> int:
        cutoff = time.time_ns() - int(self.settings.keep_days * 86_400 * 1e9)
        return await self.outbox.prune(cutoff)

    async def stop(self, deadline: float) -> None:
        """``deadline`` is a ``time.monotonic()`` value (the app's shutdown budget)."""
        if self._engine is not None:
            self._engine.close()
        # Matched but not yet written: commit them now, so the next start sends them.
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._commit_queued(), timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("webhook.stop_commit_timeout", lost=len(self._queue))
        await self.dispatcher.stop(min(STOP_GRACE_S, max(0.0, deadline - time.monotonic())))
        await self.client.close()
        await self.outbox.close()
        log.info("webhook.stopped", pending=self.stats.pending, **dict(self.stats.deliveries))
