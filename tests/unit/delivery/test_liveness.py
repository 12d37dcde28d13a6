"""Liveness: when is a sink write wedged, and when is it just slow or failing (with a manual clock)."""

from __future__ import annotations

import asyncio

from homeiq_daemon.delivery import liveness
from homeiq_daemon.delivery.liveness import Liveness
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.influx import writer as influx


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_is_healthy_however_long() -> None:
    clock = Clock()
    live = Liveness(Stats(), stall_s=10, clock=clock)
    assert live.check() is None
    clock.now += 1e6
    assert live.check() is None


def test_a_quiet_write_in_flight_becomes_wedged_after_stall_s() -> None:
    clock = Clock()
    live = Liveness(Stats(), stall_s=10, clock=clock)
    live.check()
    token = live.call_started()
    clock.now += 9
    assert live.check() is None
    clock.now += 2
    reason = live.check()
    assert reason is not None
    assert reason.startswith("sink write wedged: in flight 11 s")
    live.call_finished(token)
    assert live.check() is None


def test_sink_activity_during_a_long_write_keeps_it_alive() -> None:
    """Retries inside one write: each failed attempt is counted, which is a sign of life."""
    clock = Clock()
    stats = Stats()
    live = Liveness(stats, stall_s=10, clock=clock)
    live.call_started()
    for _ in range(10):  # 80 s in flight, but never 10 s without an attempt finishing
        clock.now += 8
        stats.sink_errors["ClientConnectorError"] += 1
        assert live.check() is None
    clock.now += 11
    assert live.check() is not None


def test_back_to_back_writes_are_not_one_long_write() -> None:
    clock = Clock()
    live = Liveness(Stats(), stall_s=10, clock=clock)
    first = live.call_started()
    clock.now += 8
    live.call_finished(first)
    live.call_started()
    clock.now += 8
    assert live.check() is None  # 16 s busy, but the second write is 8 s old and the first one finished


async def test_finished_crashed_or_cancelled_tasks_are_named() -> None:
    live = Liveness(Stats(), stall_s=10)

    async def forever() -> None:
        await asyncio.Event().wait()

    async def crash() -> None:
        raise RuntimeError("boom")

    ok = live.watch_task(asyncio.create_task(forever(), name="homeiq-ok"))
    assert live.check() is None
    other = Liveness(Stats(), stall_s=10)
    other.watch_task(asyncio.create_task(crash(), name="homeiq-crash"))
    await asyncio.sleep(0)
    assert other.check() == "task homeiq-crash crashed: RuntimeError('boom')"
    ok.cancel()
    await asyncio.sleep(0)
    assert live.check() == "task homeiq-ok was cancelled"


def test_stall_limit_covers_the_longest_retry_after() -> None:
    assert liveness.LONGEST_SINK_WAIT_S == influx._MAX_RETRY_AFTER_S
    assert liveness.stall_limit_s(10.0) == 620.0
    assert liveness.stall_limit_s(0.1) >= liveness.MIN_STALL_S
