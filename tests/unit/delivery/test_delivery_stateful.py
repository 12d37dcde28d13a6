"""The delivery loop and the real disk spool as a state machine: hypothesis interleaves batches, the sink
going down and coming back, a disk that refuses writes (ENOSPC), a full spool and daemon restarts. The
invariant, after every step and at the end: every accepted point is written, still waiting (in memory or in
the spool) or counted as dropped under a documented reason; once the sink is up and the disk writable, the
spool drains and every point not counted as dropped has been written (at least once).

Real parts: the Spool on a temporary directory, the Delivery loop and its spool thread on a real event
loop. The sink is a double speaking the BatchWriter protocol (up: it takes every line; down: it raises
TransientSinkError), the disk fault an OSError injected into the spool's record write.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from homeiq_daemon.config import load_settings
from homeiq_daemon.delivery.loop import Delivery
from homeiq_daemon.delivery.spool import Spool
from homeiq_daemon.errors import TransientSinkError
from homeiq_daemon.pipeline.batcher import Batch
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from tests.support.hypo import examples

SETTLE_CEILING_S = 30.0  # a poll's ceiling on a loaded machine, never a duration asserted


class SinkDouble:
    """A BatchWriter: records the ids of the points it took; raises TransientSinkError while down."""

    describe = "sink double"

    def __init__(self) -> None:
        self.up = True
        self.written: set[int] = set()
        self.writes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ensure_database(self) -> None:
        return None

    async def ping(self) -> bool:
        return self.up

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        if not self.up:
            raise TransientSinkError("the sink double is down")
        lines = [line for line in body.decode().split("\n") if line]
        assert len(lines) == points
        self.writes += 1
        self.written.update(int(line.rsplit(" ", 1)[1]) for line in lines)
        return WriteResult(points, 0)


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="hiq-delivery-"))
        self.loop = asyncio.new_event_loop()
        self.sink = SinkDouble()
        self.stats = Stats()
        self.accepted: set[int] = set()
        self.next_id = 1
        self.disk_full = False
        self.settings = load_settings(
            None, state_dir=self.dir / "state",
            batch={"max_pending_batches": 2},
            influxdb={"retry_max_s": 0.02, "probe_max_s": 0.02},
            spool={"drain_batch_points": 7},
        )
        self.max_spool_bytes = 64 << 10
        self._start()

    # --- the daemon's part --------------------------------------------------------------------------

    def _start(self) -> None:
        spool = Spool(self.dir / "spool", max_bytes=self.max_spool_bytes, segment_bytes=4096, fsync=False)
        real_write = spool._write_record

        def write_record(record: bytes, points: int, stamp: int) -> None:
            if self.disk_full:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(record, points, stamp)

        spool._write_record = write_record  # type: ignore[method-assign]  # the injected disk fault
        self.delivery = Delivery(self.sink, spool, self.settings, self.stats)
        self.tasks = [self.loop.create_task(self.delivery.run_writer()),
                      self.loop.create_task(self.delivery.run_spooler())]

    def _stop(self) -> None:
        async def stop() -> None:
            await self.delivery.stop(time.monotonic() + 5.0)
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        self.loop.run_until_complete(asyncio.wait_for(stop(), 30))
        self.delivery.close()

    def _run_until(self, condition: Any, what: str) -> None:
        async def wait() -> None:
            deadline = time.monotonic() + SETTLE_CEILING_S
            while not condition():
                if time.monotonic() > deadline:  # a poll's ceiling, not a timing claim
                    raise AssertionError(f"timed out waiting for {what}: {self._describe()}")
                await asyncio.sleep(0.005)

        self.loop.run_until_complete(wait())

    def _describe(self) -> str:
        st_ = self.delivery.spool.stats()
        return (f"accepted {len(self.accepted)}, written {len(self.sink.written & self.accepted)}, backlog "
                f"{self.delivery.backlog}, spool {st_.points}, dropped {dict(self.stats.points_dropped)}, "
                f"up {self.delivery.is_up}, sink {self.sink.up}, disk full {self.disk_full}")

    def _waiting_points(self) -> int:
        return self.delivery.spool.stats().points + sum(
            b.points for b in (*self.delivery._pending, *self.delivery._overflow))

    # --- rules ------------------------------------------------------------------------------------------

    @rule(points=st.integers(1, 40))
    def batch_arrives(self, points: int) -> None:
        ids = range(self.next_id, self.next_id + points)
        self.next_id += points
        self.accepted.update(ids)
        self.delivery.enqueue(Batch([f"m,entity_id=e value={i % 7}.5 {i}" for i in ids]))
        self.loop.run_until_complete(asyncio.sleep(0))

    @rule()
    def sink_goes_down(self) -> None:
        self.sink.up = False

    @rule()
    def sink_comes_back(self) -> None:
        self.sink.up = True

    @rule()
    def disk_refuses_writes(self) -> None:
        self.disk_full = True

    @rule()
    def disk_has_room_again(self) -> None:
        self.disk_full = False

    @rule()
    def time_passes(self) -> None:
        """Let the loop work until nothing moves for lack of time: memory empty, or the sink down."""
        self._run_until(lambda: self.delivery.backlog == 0 or not self.sink.up or self.disk_full,
                        "the in-memory batches to be written or spooled")

    @precondition(lambda self: self.sink.up or not self.disk_full)
    @rule()
    def daemon_restarts(self) -> None:
        self._stop()
        self._start()

    # --- the invariant -----------------------------------------------------------------------------------

    def _lost(self) -> int:
        return len(self.accepted - self.sink.written)

    @invariant()
    def every_point_is_written_waiting_or_counted(self) -> None:
        assert self.sink.written <= self.accepted, "the sink got points nobody sent"
        dropped = sum(self.stats.points_dropped.values())
        assert self._lost() <= self._waiting_points() + dropped, self._describe()

    def teardown(self) -> None:
        try:
            self.sink.up = True
            self.disk_full = False
            self.loop.run_until_complete(asyncio.sleep(0))
            self._run_until(lambda: self.delivery.is_up and self.delivery.backlog == 0
                            and self.delivery.spool.stats().points == 0, "the spool to drain")
            assert self._lost() == sum(self.stats.points_dropped.values()), self._describe()
            assert set(self.stats.points_dropped) <= {"spool_full", "spool_unwritable", "shutdown"}
            self._stop()
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


DeliveryMachine.TestCase.settings = settings(
    max_examples=examples(25), stateful_step_count=25, deadline=None,
)
test_delivery_state_machine = DeliveryMachine.TestCase


def test_points_a_full_disk_made_the_spool_drop_are_counted() -> None:
    """The example the state machine found: with the sink down and the disk refusing every write, the spool
    deletes its oldest segments to make room, the write fails all the same, and those points were lost
    without being counted as dropped."""
    machine = DeliveryMachine()
    try:
        machine.sink_goes_down()
        for _ in range(6):
            machine.batch_arrives(40)
            machine._run_until(lambda: machine.delivery.backlog == 0, "the batch to reach the spool")
        assert machine.delivery.spool.stats().points == 240
        machine.disk_refuses_writes()
        machine.batch_arrives(10)
        machine._run_until(lambda: machine.delivery.spool.stats().points == 0, "the spool to give up its segments")
        machine.every_point_is_written_waiting_or_counted()
        assert machine.stats.points_dropped["spool_full"] == 240
    finally:
        machine.teardown()
