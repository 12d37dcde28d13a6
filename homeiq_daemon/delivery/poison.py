"""Poison batches: a batch the sink fails on for a reason other than being down is set aside, not retried.

The sinks isolate bad lines themselves (the InfluxDB writer splits a rejected batch; the embedded store
skips rows it cannot store). This is the last net below them: a ``RejectedBatchError``, a corrupt page in
the embedded store, or any other error a write raises for its content would otherwise kill the writer task,
and the same batch would come back from the spool at every start (a crash loop). Instead the whole batch
is written to the dead-letter directory (line protocol, re-sendable by hand), counted in
``points_dropped{reason="poison"}``, logged, and delivery goes on with the next one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from homeiq_daemon.errors import SinkAuthError, TransientSinkError
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.influx.deadletter import DeadLetters

log = get_logger("homeiq.delivery")
T = TypeVar("T")

# Errors that mean "the sink is down": the batch waits (in memory or in the spool), it is not poison.
NOT_POISON: tuple[type[Exception], ...] = (TransientSinkError, SinkAuthError)

InIO = Callable[..., Awaitable[Any]]


class PoisonQuarantine:
    def __init__(self, stats: Stats, dead_letters: DeadLetters | None) -> None:
        self._stats = stats
        self._dead_letters = dead_letters
        self.batches = 0

    async def quarantine(self, body: bytes, points: int, exc: BaseException, where: str, in_io: InIO) -> None:
        """Dead-letter one batch the sink cannot take (``where``: "live" or "spool")."""
        self.batches += 1
        self._stats.points_dropped["poison"] += points
        reason = f"{type(exc).__name__}: {exc}"[:500]
        saved = False
        if self._dead_letters is not None:
            try:
                await in_io(self._dead_letters.add_batch, body, points, reason)
                saved = True
            except OSError as io_error:
                log.error("delivery.dead_letter_failed", error=str(io_error)[:200])
        if saved:
            self._stats.dead_letter_points += points
        log.error(
            "delivery.poison_batch",
            source=where,
            points=points,
            error=reason[:300],
            dead_lettered=saved,
            action="batch set aside in the dead-letter directory; delivery goes on with the next one",
            exc_info=exc if self.batches <= 3 else None,  # the first few with their traceback
        )
