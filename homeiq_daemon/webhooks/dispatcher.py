"""Gets each outbox row to its receiver: retries with backoff up to the horizon, per-rule order, per-target
concurrency.

One *lane* per rule: a task that works through that rule's deliveries strictly in order (a later delivery
waits for the earlier one to finish, however long its retries take), so a receiver never sees "door closed"
before "door opened". Lanes of different rules run side by side; a semaphore per target caps the requests in
flight to one receiver. A lane task exists only while its rule has work; ``run`` (the supervised task)
starts them, so a lane that crashes ends ``run`` and the supervisor starts it again: the work stays queued.

Retried: no answer, timeouts, 408, 429 and 5xx (``Retry-After`` honoured, otherwise exponential backoff
with jitter). Final: 2xx (delivered) and every other status (rejected). Past ``horizon_s`` since the rule
fired, a delivery is dead-lettered; the last attempt lands on the horizon itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

from homeiq_daemon.config.webhooks import WebhookSettings
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.webhooks.client import AttemptResult, WebhookClient
from homeiq_daemon.webhooks.outbox import DEAD, DELIVERED, REJECTED, Outbox, OutboxRow
from homeiq_daemon.webhooks.signing import sign_headers
from homeiq_daemon.webhooks.stats import WebhookStats

log = get_logger("homeiq.webhooks")
NS = 1_000_000_000


@dataclass(slots=True)
class Work:
    """One delivery in memory: the row's immutable parts plus its attempt bookkeeping."""

    id: str
    rule: str
    target: str
    body: bytes
    received_ns: int
    created_ns: int
    attempts: int = 0
    next_attempt_ns: int = 0
    entity_id: str = ""
    """The entity whose change made this delivery: every log line about it names it (HOMEIQ_ENTITY_ID=)."""

    @classmethod
    def from_row(cls, row: OutboxRow) -> Work:
        return cls(
            row.id, row.rule, row.target, row.body, row.received_ns, row.created_ns, row.attempts, row.next_attempt_ns,
            row.entity_id,
        )  # fmt: skip


class Dispatcher:
    def __init__(self, settings: WebhookSettings, outbox: Outbox, client: WebhookClient, stats: WebhookStats) -> None:
        self._settings = settings
        self._targets = settings.all_targets
        self._outbox = outbox
        self._client = client
        self._stats = stats
        self._lanes: dict[str, deque[Work]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def enqueue(self, work: Work) -> None:
        """Append to its rule's lane (already written to the outbox); starts the lane task when idle."""
        if self._stop.is_set():
            return  # the row stays pending in the outbox; the next start picks it up
        self._lanes.setdefault(work.rule, deque()).append(work)
        self._stats.pending += 1
        if work.rule not in self._tasks:
            self._wake.set()

    async def run(self) -> None:
        """Start a lane for each rule with work, until stopped. A lane's crash ends this (TaskGroup)."""
        async with asyncio.TaskGroup() as group:
            while not self._stop.is_set():
                self._wake.clear()
                for rule, lane in list(self._lanes.items()):
                    if lane and rule not in self._tasks:
                        task = group.create_task(self._run_lane(rule), name=f"homeiq-webhook-{rule}")
                        self._tasks[rule] = task
                        task.add_done_callback(partial(self._lane_done, rule))
                await self._wake.wait()

    def _lane_done(self, rule: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(rule) is task:
            del self._tasks[rule]
        if self._lanes.get(rule):  # work that arrived while the lane was finishing gets a fresh lane
            self._wake.set()

    async def _run_lane(self, rule: str) -> None:
        lane = self._lanes[rule]
        while lane and not self._stop.is_set():
            work = lane[0]
            try:
                finished = await self._deliver(work)
            except Exception:  # a bug must not stall the lane in a hot loop: log, pause, try again
                log.exception("webhook.delivery_crashed", rule=rule, delivery_id=work.id, entity_id=work.entity_id)
                finished = False
                await self._sleep(5.0)
            if finished:
                lane.popleft()
                self._stats.pending -= 1
        if not lane:
            self._lanes.pop(rule, None)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    def _limit(self, target: str) -> asyncio.Semaphore:
        sem = self._limits.get(target)
        if sem is None:
            spec = self._targets.get(target)
            size = self._settings.target_concurrency(spec) if spec is not None else 1
            sem = self._limits[target] = asyncio.Semaphore(size)
        return sem

    async def _deliver(self, work: Work) -> bool:
        """Attempts until the delivery is finished (True) or the dispatcher stops (False)."""
        target = self._targets.get(work.target)
        if target is None:
            await self._finish(work, DEAD, None, f"target {work.target!r} is no longer configured")
            return True
        deadline_ns = work.created_ns + int(self._settings.horizon_s * NS)
        while True:
            await self._sleep((work.next_attempt_ns - time.time_ns()) / NS)
            if self._stop.is_set():
                return False
            async with self._limit(work.target):
                if self._stop.is_set():
                    return False
                headers = sign_headers(target.keys, work.id, int(time.time()), work.body)
                result = await self._client.post(
                    target.url, work.body, headers, timeout_s=target.timeout_s, verify_ssl=target.verify_ssl
                )
            work.attempts += 1
            self._stats.attempts += 1
            if work.attempts > 1:
                self._stats.retries += 1
            outcome = result.outcome
            if outcome == "delivered":
                self._stats.record_latency((time.time_ns() - work.received_ns) / NS)
                await self._finish(work, DELIVERED, result.status, None)
                return True
            self._stats.attempt_errors[str(result.status) if result.status else "no_answer"] += 1
            if outcome == "final":
                await self._finish(work, REJECTED, result.status, result.describe())
                return True
            now_ns = time.time_ns()
            if now_ns >= deadline_ns:
                await self._finish(work, DEAD, result.status, result.describe())
                return True
            delay_s = result.retry_after_s
            if delay_s is None:
                delay_s = backoff_delay(work.attempts, self._settings.retry_initial_s, self._settings.retry_max_s)
            work.next_attempt_ns = min(now_ns + int(delay_s * NS), deadline_ns)
            self._log_retry(work, result, delay_s)
            try:
                await self._outbox.record_attempt(
                    work.id,
                    attempts=work.attempts,
                    next_attempt_ns=work.next_attempt_ns,
                    last_status=result.status,
                    last_error=result.describe(),
                )
            except sqlite3.Error as exc:  # the in-memory schedule still holds; a restart resends the same id
                log.warning("webhook.outbox_write_failed", error=str(exc))

    def _log_retry(self, work: Work, result: AttemptResult, delay_s: float) -> None:
        fields = {
            "rule": work.rule,
            "target": work.target,
            "entity_id": work.entity_id,
            "delivery_id": work.id,
            "attempt": work.attempts,
            "status": result.status,
            "error": result.error,
            "retry_in_s": round(delay_s, 1),
        }
        if work.attempts == 1:
            log.warning("webhook.retrying", **fields)
        else:
            log.debug("webhook.retrying", **fields)

    async def _finish(self, work: Work, status: str, http_status: int | None, error: str | None) -> None:
        self._stats.record_outcome(
            work.rule, work.target, status, attempts=work.attempts, http_status=http_status, error=error
        )
        fields = {"rule": work.rule, "target": work.target, "entity_id": work.entity_id, "delivery_id": work.id,
                  "attempts": work.attempts}  # fmt: skip
        if status == DELIVERED:
            log.debug("webhook.delivered", status=http_status, **fields)
        else:
            if status == DEAD:
                self._stats.dead_letters += 1
            log.warning(f"webhook.{'dead_lettered' if status == DEAD else 'rejected'}", error=error, **fields)
        try:
            await self._outbox.finish(
                work.id,
                status,
                attempts=work.attempts,
                last_status=http_status,
                last_error=error,
                finished_ns=time.time_ns(),
            )
        except sqlite3.Error as exc:  # stays pending on disk: sent again (same webhook-id) after a restart
            log.warning("webhook.outbox_write_failed", error=str(exc))

    async def stop(self, grace_s: float) -> None:
        """No new attempts; attempts already on the wire get ``grace_s`` to finish; the rest stays in the
        outbox (pending, same id) for the next start."""
        self._stop.set()
        self._wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, grace_s))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
