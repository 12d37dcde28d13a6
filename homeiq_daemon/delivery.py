"""Delivery loop: gets every batch to the sink, through the disk spool when the sink is down.

States: **up** (batches wait in a bounded in-memory queue and are written in order) and **down** (the last
write failed after its retries: every batch goes to the spool; the oldest spooled batch is retried with
backoff, and its success is what brings the state back up). While up with a non-empty spool, spooled and
live batches alternate, so the backlog drains at full speed without starving live data.

Nothing here blocks the producers: ``enqueue`` is synchronous and O(1). Spool file IO runs in one worker
thread, so a slow SD card does not stall the event loop (and the Home Assistant reader with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from homeiq_daemon.batcher import Batch
from homeiq_daemon.config import Settings
from homeiq_daemon.errors import SinkAuthError, TransientSinkError
from homeiq_daemon.logs import get_logger
from homeiq_daemon.retry import backoff_delay
from homeiq_daemon.sink import BatchWriter, WriteResult
from homeiq_daemon.spool import Spool, SpoolRecord
from homeiq_daemon.stats import Stats

log = get_logger("homeiq.delivery")
T = TypeVar("T")


class Delivery:
    def __init__(self, writer: BatchWriter, spool: Spool, settings: Settings, stats: Stats) -> None:
        self.writer = writer
        self.spool = spool
        self._stats = stats
        self._max_pending = settings.batch.max_pending_batches
        self._retry_max_s = settings.influxdb.retry_max_s
        self._pending: deque[Batch] = deque()
        self._overflow: deque[Batch] = deque()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homeiq-spool")
        self._wake_writer = asyncio.Event()
        self._wake_spooler = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._up = True
        self._down_since: float | None = None
        self._down_attempts = 0
        self._spool_turn = False
        self._spool_full_episode = False
        self._stopping = False
        self.on_progress: Callable[[], None] | None = None  # e.g. the systemd watchdog's liveness mark
        self._refresh_spool_stats()
        self._report_damage()

    # --- producers ------------------------------------------------------------------------------

    def enqueue(self, batch: Batch) -> None:
        """Accept a full batch. Never blocks; past the in-memory bound the batch goes to the spool."""
        if self._up and not self._stopping and len(self._pending) < self._max_pending:
            self._pending.append(batch)
            self._wake_writer.set()
        else:
            self._overflow.append(batch)
            self._wake_spooler.set()
        if len(self._pending) >= self._max_pending or len(self._overflow) >= self._max_pending:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Backpressure for sources that can wait (the replay file); the Home Assistant reader never does."""
        while not self._room.is_set():
            await self._room.wait()

    def _update_room(self) -> None:
        if len(self._pending) < self._max_pending and len(self._overflow) < self._max_pending:
            self._room.set()

    @property
    def is_up(self) -> bool:
        return self._up

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._overflow)

    # --- tasks ----------------------------------------------------------------------------------

    async def _in_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def run_spooler(self) -> None:
        while True:
            await self._wake_spooler.wait()
            self._wake_spooler.clear()
            await self._spill_overflow()

    async def _spill_overflow(self) -> None:
        while self._overflow:
            batch = self._overflow[0]
            body = batch.body()
            try:
                dropped = await self._in_io(self.spool.append, body, batch.points)
            except OSError as exc:
                # Disk full or read-only: keep the batch in memory (bounded by the producers' backpressure
                # and the time until the disk recovers) and try again shortly.
                log.error("spool.write_failed", error=str(exc), batches_waiting=len(self._overflow))
                await asyncio.sleep(1.0)
                continue
            self._overflow.popleft()
            if dropped:
                self._stats.points_dropped["spool_full"] += dropped
                if not self._spool_full_episode:
                    self._spool_full_episode = True
                    log.error("spool.full_dropping_oldest", max_bytes=self.spool.max_bytes, dropped_points=dropped)
            self._refresh_spool_stats()
            self._update_room()
            self._wake_writer.set()

    async def run_writer(self) -> None:
        while True:
            if self._up:
                if not await self._write_next():
                    self._wake_writer.clear()
                    if not self._pending and (self._stopping or not self._spool_has_data()):
                        await self._wake_writer.wait()
            else:
                await self._recover()

    async def _write_next(self) -> bool:
        """Write one batch (live or spooled); False when there was nothing to write."""
        take_spool = not self._stopping and (self._spool_turn or not self._pending) and self._spool_has_data()
        if take_spool:
            record = await self._in_io(self.spool.peek)
            if record is None:
                self._spool_full_episode = False
                self._refresh_spool_stats()
                take_spool = False
            else:
                self._spool_turn = False
                return await self._write_spooled(record)
        if not self._pending:
            return False
        self._spool_turn = True
        batch = self._pending[0]
        try:
            result = await self.writer.write(batch.body(), batch.points)
        except (TransientSinkError, SinkAuthError) as exc:
            self._go_down(exc)
            return True
        if self._pending and self._pending[0] is batch:
            self._pending.popleft()
        self._account(result)
        self._update_room()
        return True

    async def _write_spooled(self, record: SpoolRecord) -> bool:
        try:
            body = record.body()
        except (OSError, EOFError, ValueError) as exc:  # a payload that passed the crc but will not inflate
            log.error("spool.record_unreadable", error=str(exc), points=record.points)
            self._stats.points_dropped["spool_corrupt"] += record.points
            await self._in_io(self.spool.ack, record)
            return True
        try:
            result = await self.writer.write(body, record.points, gzipped=record.payload if record.gzipped else None)
        except (TransientSinkError, SinkAuthError) as exc:
            self._go_down(exc)
            return True
        await self._in_io(self.spool.ack, record)
        self._stats.spool_drained_points += result.written
        self._account(result)
        self._refresh_spool_stats()
        return True

    def _account(self, result: WriteResult) -> None:
        self._stats.points_written += result.written
        self._stats.batches_written += 1
        self._stats.batch_points.append(result.written + result.rejected)
        if self.on_progress is not None:
            self.on_progress()

    def _go_down(self, exc: Exception) -> None:
        if self._up:
            self._up = False
            self._down_since = time.monotonic()
            self._down_attempts = 0
            self._stats.sink_state = "down"
            self._stats.sink_down_since = time.time()
            level = log.error if isinstance(exc, SinkAuthError) else log.warning
            level(
                "sink.down",
                sink=self.writer.describe,
                error=str(exc)[:300],
                action="spooling batches to disk until it answers again",
            )
        # Everything waiting in memory goes to disk now: memory must not grow with the outage.
        while self._pending:
            self._overflow.appendleft(self._pending.pop())
        self._wake_spooler.set()

    async def _recover(self) -> None:
        self._down_attempts += 1
        delay = backoff_delay(self._down_attempts, 1.0, self._retry_max_s)
        await asyncio.sleep(delay)
        # Make sure what is waiting is on disk before trying: the oldest spooled batch is the probe.
        await self._spill_overflow()
        record = await self._in_io(self.spool.peek)
        if record is None:
            ok = await self.writer.ping()
            if ok:
                self._mark_up()
            return
        try:
            body = record.body()
            result = await self.writer.write(body, record.points, gzipped=record.payload if record.gzipped else None)
        except (TransientSinkError, SinkAuthError) as exc:
            if self._down_attempts == 1 or self._down_attempts % 20 == 0:
                log.info(
                    "sink.still_down",
                    error=str(exc)[:200],
                    attempts=self._down_attempts,
                    spooled_points=self._stats.spool_points,
                )
            return
        except (OSError, EOFError, ValueError) as exc:
            log.error("spool.record_unreadable", error=str(exc), points=record.points)
            self._stats.points_dropped["spool_corrupt"] += record.points
            await self._in_io(self.spool.ack, record)
            return
        await self._in_io(self.spool.ack, record)
        self._stats.spool_drained_points += result.written
        self._account(result)
        self._mark_up()

    def _mark_up(self) -> None:
        down_for = time.monotonic() - self._down_since if self._down_since else 0.0
        self._up = True
        self._down_since = None
        self._stats.sink_state = "up"
        self._stats.sink_down_since = None
        self._refresh_spool_stats()
        log.info(
            "sink.up",
            sink=self.writer.describe,
            down_s=round(down_for, 1),
            spooled_points=self._stats.spool_points,
            action="draining the spool",
        )
        self._update_room()
        self._wake_writer.set()

    # --- stop -----------------------------------------------------------------------------------

    async def stop(self, deadline: float) -> None:
        """Write what is in memory before ``deadline`` (monotonic) when the sink is up; spool the rest."""
        self._stopping = True
        self._wake_writer.set()
        while self._up and self._pending and time.monotonic() < deadline - 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling keeps the deadline simple; it runs once, at stop
        left = len(self._pending) + len(self._overflow)
        while self._pending:
            self._overflow.appendleft(self._pending.pop())
        if self._overflow:
            await self._spill_overflow_until(deadline)
        if left:
            log.info("delivery.stopped", batches_spooled=left, spooled_points=self.spool.stats().points)

    async def _spill_overflow_until(self, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._spill_overflow(), timeout=max(0.5, deadline - time.monotonic()))
        if self._overflow:
            lost = sum(b.points for b in self._overflow)
            self._stats.points_dropped["shutdown"] += lost
            log.error("delivery.lost_at_stop", points=lost, reason="spool could not be written before the deadline")

    def close(self) -> None:
        self.spool.close()
        self._io.shutdown(wait=True)

    def _spool_has_data(self) -> bool:
        return self.spool.stats().records > 0

    # --- reporting ------------------------------------------------------------------------------

    def _refresh_spool_stats(self) -> None:
        st = self.spool.stats()
        self._stats.spool_bytes = st.bytes
        self._stats.spool_records = max(st.records, 0)
        self._stats.spool_points = max(st.points, 0)
        self._stats.spool_oldest_ms = st.oldest_spooled_ms if st.records > 0 else None
        self._stats.spool_damaged_bytes = self.spool.damaged_bytes

    def _report_damage(self) -> None:
        for damage in self.spool.damage:
            log.error(
                "spool.damaged",
                segment=damage.segment,
                offset=damage.offset,
                skipped_bytes=damage.skipped_bytes,
                reason=damage.reason,
            )
        if self._spool_has_data():
            st = self.spool.stats()
            log.info("spool.resuming", spooled_points=st.points, spooled_batches=st.records, bytes=st.bytes)
