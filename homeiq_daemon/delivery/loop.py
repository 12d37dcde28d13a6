"""Delivery loop: gets every batch to the sink, through the disk spool when the sink is down.

States: **up** (batches wait in a bounded in-memory queue and are written in order) and **down** (the last
write failed after its retries: every batch goes to the spool; the oldest spooled batch is retried with
backoff, and its success is what brings the state back up). While up with a non-empty spool, spooled and
live batches alternate, so the backlog drains at full speed without starving live data.

Nothing here blocks the producers: ``enqueue`` is synchronous and O(1). Spool file IO runs in one worker
thread, so a slow SD card does not stall the event loop (and the Home Assistant reader with it). Two tasks
run: the writer (sink writes, recovery probes, draining) and the spooler (moves overflow batches to disk);
``stop`` bounds the shutdown by cancelling an in-flight write and spooling its batch instead (a batch that
reached InfluxDB anyway is harmless to write again: its timestamps come from the events).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.poison import NOT_POISON, PoisonQuarantine
from homeiq_daemon.delivery.spool import Spool, SpoolRecord
from homeiq_daemon.delivery.spooling import SpoolSide
from homeiq_daemon.errors import SinkAuthError
from homeiq_daemon.model import Batch
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.progress import Progress
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import BatchWriter, WriteResult
from homeiq_daemon.sinks.influx.deadletter import DeadLetters

log = get_logger("homeiq.delivery")

# Upper bound on the stored (usually gzip) bytes of one drain request, whatever drain_batch_points says.
_DRAIN_MAX_BYTES = 8 * 1024 * 1024
# Part of the shutdown budget kept for spooling what could not be written (at least 1 s, at most 5 s).
_STOP_SPOOL_SHARE = 0.25


class Delivery(SpoolSide):
    def __init__(
        self,
        writer: BatchWriter,
        spool: Spool,
        settings: Settings,
        stats: Stats,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.writer = writer
        self._poison = PoisonQuarantine(stats, dead_letters)
        self.spool = spool
        self._stats = stats
        self._max_pending = settings.batch.max_pending_batches
        # A down sink is probed at least every probe_max_s, so its recovery is noticed within that.
        self._retry_max_s = min(settings.influxdb.retry_max_s, settings.influxdb.probe_max_s)
        self._drain_points = self._drain_points_now = settings.spool.drain_batch_points
        self._pending: deque[Batch] = deque()
        self._overflow: deque[Batch] = deque()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homeiq-spool")
        self._spill_lock = asyncio.Lock()
        self._wake_writer = asyncio.Event()
        self._wake_spooler = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._up = True
        self._down_since: float | None = None
        self._down_attempts = 0
        self._spool_turn = False
        self._spool_full_episode = False
        self._disk_error_episode = False
        self._unwritable_dropping = False
        self._draining_since: float | None = None
        self._drain_progress: Progress | None = None
        self._drain_base = 0
        self._stopping = False
        self._writer_task: asyncio.Task[None] | None = None
        self.on_progress: Callable[[], None] | None = None  # e.g. the systemd watchdog's liveness mark
        # Called with each batch once it is safe: acknowledged by the sink or appended to the spool.
        self.on_acknowledged: Callable[[Batch], None] | None = None
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
        """Batches in memory (waiting for the sink or for the disk)."""
        return len(self._pending) + len(self._overflow)

    # --- writing --------------------------------------------------------------------------------

    async def run_writer(self) -> None:
        self._writer_task = asyncio.current_task()  # stop() cancels an in-flight write through it
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
            records = await self._in_io(self.spool.peek_many, self._drain_points, _DRAIN_MAX_BYTES)
            if not records:
                self._spool_drained()
            else:
                self._spool_turn = False
                await self._write_spooled(records)
                return True
        if not self._pending:
            return False
        self._spool_turn = True
        # When batches queue up (a burst, a slow InfluxDB), send consecutive ones as one request, up to the
        # drain size: influxd takes 10,000-point requests far faster than ten 1,000-point ones.
        batches = [self._pending[0]]
        points = batches[0].points
        for queued in itertools.islice(self._pending, 1, None):
            if points + queued.points > self._drain_points_now:
                break
            batches.append(queued)
            points += queued.points
        body = batches[0].body() if len(batches) == 1 else b"".join(b.body() for b in batches)
        try:
            result = await self.writer.write(body, points)
        except NOT_POISON as exc:
            self._go_down(exc)
            return True
        except Exception as exc:  # noqa: BLE001 - poison: set aside, never a dead writer (delivery/poison.py)
            if len(batches) > 1:  # find the poison one: the next rounds send them one by one
                self._drain_points_now = 0
                return True
            await self._poison.quarantine(body, points, exc, "live", self._in_io)
            result = WriteResult(0, points)
        self._drain_points_now = self._drain_points
        for batch in batches:
            if self._pending and self._pending[0] is batch:
                self._pending.popleft()
            if self.on_acknowledged is not None:
                self.on_acknowledged(batch)
        self._account(result)
        self._update_room()
        return True

    async def _write_spooled(self, records: list[SpoolRecord]) -> bool:
        """Write consecutive spooled records as one request; False when the sink refused it as transient
        (they stay spooled). Gzip payloads are sent as they are: concatenated gzip members are one stream.
        Inflating them (up to ``_DRAIN_MAX_BYTES`` of gzip) runs in the IO thread: never a stall of the loop."""
        try:
            body = await self._in_io(_plain_body, records)
        except (OSError, EOFError, ValueError, zlib.error) as exc:  # passed the crc, yet will not inflate
            log.error("spool.record_unreadable", error=str(exc), records=len(records))
            return await self._write_spooled_one_by_one(records)
        points = sum(record.points for record in records)
        gzipped = b"".join(r.payload for r in records) if all(r.gzipped for r in records) else None
        try:
            result = await self.writer.write(body, points, gzipped=gzipped)
        except NOT_POISON as exc:
            self._go_down(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - poison: set aside, never a dead writer (delivery/poison.py)
            if len(records) > 1:
                return await self._write_spooled_one_by_one(records)
            # Set aside and acknowledged: a poison record must not come back at every start.
            await self._poison.quarantine(body, points, exc, "spool", self._in_io)
            result = WriteResult(0, points)
        await self._in_io(self.spool.ack_many, records)
        if self._draining_since is None:
            self._draining_since = time.monotonic()
            self._drain_progress = Progress("spool drain", unit="points", board=self._stats.progress)
            self._drain_base = self._stats.spool_drained_points
        self._stats.spool_drained_points += result.written
        self._account(result)
        self._refresh_spool_stats()
        if self._drain_progress is not None:
            done = self._stats.spool_drained_points - self._drain_base
            self._drain_progress.update(done, total=done + self._stats.spool_points)
        if self.spool.stats().records == 0:
            self._spool_drained()
        return True

    async def _write_spooled_one_by_one(self, records: list[SpoolRecord]) -> bool:
        """A payload that will not inflate (rare: it passed its crc): drop that one, send the others."""
        for record in records:
            try:
                await self._in_io(record.body)
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                log.error(
                    "spool.record_dropped", reason="payload does not inflate", error=str(exc), points=record.points
                )
                self._stats.points_dropped["spool_corrupt"] += record.points
                await self._in_io(self.spool.ack_many, [record])
                self._refresh_spool_stats()
                continue
            if not await self._write_spooled([record]):
                return False
        return True

    def _account(self, result: WriteResult) -> None:
        self._stats.points_written += result.written
        self._stats.batches_written += 1
        self._stats.record_batch(result.written + result.rejected)
        if self.on_progress is not None:
            self.on_progress()

    def _spool_drained(self) -> None:
        self._refresh_spool_stats()
        self._spool_full_episode = False
        if self._draining_since is not None:
            log.info(
                "spool.drained",
                drained_points=self._stats.spool_drained_points,
                seconds=round(time.monotonic() - self._draining_since, 1),
            )
            self._draining_since = None
        if self._drain_progress is not None:
            self._drain_progress.finish()
            self._drain_progress = None

    # --- down and back up -----------------------------------------------------------------------

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
        self._update_room()
        self._wake_spooler.set()

    async def _recover(self) -> None:
        self._down_attempts += 1
        await asyncio.sleep(backoff_delay(self._down_attempts, 1.0, self._retry_max_s))
        if self._stopping:
            return
        # What waits in memory goes to disk first: the oldest spooled batch is the probe.
        await self._spill_overflow()
        # The probe is the oldest record alone: a probe that fails costs one batch of memory, not a drain request
        # (repeated multi-megabyte allocations fragment the heap, and RSS must stay flat however long it lasts).
        record = await self._in_io(self.spool.peek)
        if record is None:
            if await self.writer.ping():
                self._mark_up()
            return
        if await self._write_spooled([record]):
            self._mark_up()
        elif self._down_attempts == 1 or self._down_attempts % 20 == 0:
            log.info("sink.still_down", attempts=self._down_attempts, spooled_points=self._stats.spool_points)

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
            action="draining the spool" if self._stats.spool_records else "none",
        )
        self._update_room()
        self._wake_writer.set()

    # --- stop -----------------------------------------------------------------------------------

    async def stop(self, deadline: float) -> None:
        """Write what is in memory before ``deadline`` (monotonic) when the sink is up; spool the rest.

        A write still in flight when the flush time is up (a hung server answers only at its timeout) is
        cancelled and its batch spooled, so the stop is bounded whatever the sink does."""
        self._stopping = True
        self._wake_writer.set()
        budget = max(0.0, deadline - time.monotonic())
        flush_until = deadline - min(5.0, max(1.0, budget * _STOP_SPOOL_SHARE))
        while self._up and self._pending and time.monotonic() < flush_until:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # polling keeps the deadline simple; it runs once, at stop
        task = self._writer_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=1.0)
        moved = len(self._pending)
        while self._pending:
            self._overflow.appendleft(self._pending.pop())
        left = len(self._overflow)
        if self._overflow:
            await self._spill_overflow(deadline)
        if self._overflow:
            lost = sum(b.points for b in self._overflow)
            self._stats.points_dropped["shutdown"] += lost
            log.error("delivery.lost_at_stop", points=lost, reason="the spool could not be written before the deadline")
        if left:
            log.info(
                "delivery.stopped",
                batches_spooled=left - len(self._overflow),
                unwritten_batches_moved=moved,
                spooled_points=self.spool.stats().points,
            )

    def close(self) -> None:
        """Close the spool in its own thread (after any append still running there), then the thread."""
        self._io.submit(self.spool.close)
        self._io.shutdown(wait=True)

    def _spool_has_data(self) -> bool:
        return self.spool.stats().records > 0

def _plain_body(records: list[SpoolRecord]) -> bytes:
    """The records' batches as one plain line-protocol body (in the IO thread: gzip inflation is CPU work)."""
    return b"".join(record.body() for record in records)
