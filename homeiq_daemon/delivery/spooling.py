"""The delivery loop's spool side: moving overflow batches to the disk spool, the disk refusing writes,
spool statistics and damage reports. A part of ``Delivery`` (delivery/loop.py), kept apart so each file
reads in one sitting; the state it shares with the writer side is declared below.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from homeiq_daemon.delivery.spool import Spool
from homeiq_daemon.model import Batch
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats

log = get_logger("homeiq.delivery")
T = TypeVar("T")

# While the disk refuses writes, batches wait in memory up to this many times the in-memory bound; older
# ones beyond that are dropped (counted as "spool_unwritable"), so memory stays bounded.
_UNWRITABLE_FACTOR = 4
_DISK_RETRY_S = 1.0


class SpoolSide:
    spool: Spool
    on_acknowledged: Callable[[Batch], None] | None
    on_progress: Callable[[], None] | None
    _stats: Stats
    _io: ThreadPoolExecutor
    _max_pending: int
    _overflow: deque[Batch]
    _spill_lock: asyncio.Lock
    _wake_spooler: asyncio.Event
    _wake_writer: asyncio.Event
    _spool_full_episode: bool
    _disk_error_episode: bool
    _unwritable_dropping: bool

    def _update_room(self) -> None:  # the writer side's (Delivery) decides when producers may go on
        raise NotImplementedError

    # --- spooling -------------------------------------------------------------------------------

    async def _in_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def run_spooler(self) -> None:
        while True:
            await self._wake_spooler.wait()
            self._wake_spooler.clear()
            await self._spill_overflow()

    async def _spill_overflow(self, deadline: float | None = None) -> None:
        """Move overflow batches to the spool, oldest first. One spill at a time (the lock), so no batch is
        appended twice or skipped; ``deadline`` (monotonic) stops between batches."""
        async with self._spill_lock:
            while self._overflow:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                batch = self._overflow[0]
                dropped_before = self.spool.dropped_points  # appends run one at a time, under this lock
                try:
                    dropped = await self._append(batch)
                except OSError as exc:
                    # A full disk makes the spool drop its oldest segments for room; when the write fails
                    # all the same, those points are gone too and must be counted.
                    self._count_spool_drops(self.spool.dropped_points - dropped_before)
                    self._disk_refused(exc)
                    await asyncio.sleep(_DISK_RETRY_S)
                    continue
                self._spooled(batch, dropped)

    async def _append(self, batch: Batch) -> int:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._io, self.spool.append, batch.body(), batch.points)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The worker thread finishes this append whatever we do: account for it when it does, so the
            # batch is neither lost nor counted as lost.
            def settle(done: asyncio.Future[int]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self._spooled(batch, done.result())

            future.add_done_callback(settle)
            raise

    def _spooled(self, batch: Batch, dropped: int) -> None:
        if self.on_acknowledged is not None:
            self.on_acknowledged(batch)
        if self._overflow and self._overflow[0] is batch:
            self._overflow.popleft()
        else:
            with contextlib.suppress(ValueError):
                self._overflow.remove(batch)
        if self._disk_error_episode:
            self._disk_error_episode = self._unwritable_dropping = False
            log.info(
                "spool.write_recovered",
                batches_waiting=len(self._overflow),
                dropped_points_total=self._stats.points_dropped["spool_unwritable"],
            )
        self._count_spool_drops(dropped)
        self._refresh_spool_stats()
        self._update_room()
        self._wake_writer.set()
        if self.on_progress is not None:
            self.on_progress()

    def _count_spool_drops(self, dropped: int) -> None:
        if dropped:
            self._stats.points_dropped["spool_full"] += dropped
            if not self._spool_full_episode:
                self._spool_full_episode = True
                log.error(
                    "spool.full_dropping_oldest",
                    max_bytes=self.spool.max_bytes,
                    dropped_points=dropped,
                    policy="the oldest segment is deleted to make room; logged once until the spool drains",
                )

    def _disk_refused(self, exc: OSError) -> None:
        """The disk refused a spool write (full, read-only, I/O error): keep a bounded number in memory."""
        if not self._disk_error_episode:
            self._disk_error_episode = True
            log.error("spool.write_failed", error=str(exc), batches_waiting=len(self._overflow))
        limit = self._max_pending * _UNWRITABLE_FACTOR
        lost = 0
        while len(self._overflow) > limit:
            lost += self._overflow.popleft().points
        if lost:
            self._stats.points_dropped["spool_unwritable"] += lost
            if not self._unwritable_dropping:  # once per episode; the counter has the rest
                self._unwritable_dropping = True
                log.warning("spool.unwritable_dropping_oldest", dropped_points=lost, kept_batches=limit)

    # --- reporting ------------------------------------------------------------------------------

    def _refresh_spool_stats(self) -> None:
        st = self.spool.stats()
        self._stats.spool_bytes = st.bytes
        self._stats.spool_records = max(st.records, 0)
        self._stats.spool_points = max(st.points, 0)
        self._stats.spool_oldest_ms = st.oldest_spooled_ms if st.records > 0 else None
        self._stats.spool_damaged_bytes = self.spool.damaged_bytes
        self._stats.spool_damaged_regions = self.spool.damaged_regions

    def _report_damage(self) -> None:
        if self.spool.set_aside is not None:
            log.error(
                "spool.newer_format_set_aside",
                reason=self.spool.set_aside_reason,
                kept_in=str(self.spool.set_aside),
                action="not read and not deleted; a homeiq that knows this format can send it (move it back as "
                "state_dir/spool); this one spools into a fresh directory",
            )
        for damage in self.spool.damage:
            log.error(
                "spool.damaged",
                segment=damage.segment,
                offset=damage.offset,
                skipped_bytes=damage.skipped_bytes,
                reason=damage.reason,
            )
        if self.spool.damaged_regions:
            log.error(
                "spool.damage_summary",
                regions=self.spool.damaged_regions,
                skipped_bytes=self.spool.damaged_bytes,
                action="valid records before and after each damaged stretch are kept and will be sent",
            )
        st = self.spool.stats()
        if st.records > 0:
            log.info("spool.resuming", spooled_points=st.points, spooled_batches=st.records, bytes=st.bytes)
