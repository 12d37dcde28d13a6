"""The webhook service end to end on loopback: real SQLite outbox, real aiohttp receiver, real clock.

No assertion here measures time: waits are polls with a generous ceiling, "nothing more arrives" is checked
after the service stopped (so nothing can still be in flight), and Retry-After by the delay the dispatcher
schedules (its ``webhook.retrying`` log).

Retries, Retry-After, final 4xx, the horizon, per-rule order, per-target concurrency, restarts and a
receiver that never answers. Secrets are fresh per test; signatures are checked by ``standardwebhooks``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from homeiq_daemon.config.webhooks import WebhookSettings
from homeiq_daemon.errors import ConfigError
from homeiq_daemon.model import EntityState, StateChange
from homeiq_daemon.webhooks.outbox import read_log
from homeiq_daemon.webhooks.service import STOP_GRACE_S, WebhookService
from homeiq_daemon.webhooks.signing import encode_secret
from tests.support.daemon import eventually
from tests.support.webhook_receiver import Receiver

SECRET = encode_secret(os.urandom(32))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    await rx.start()
    try:
        yield rx
    finally:
        await rx.stop()


def settings_for(url: str, *rules: dict[str, Any], **overrides: Any) -> WebhookSettings:
    data: dict[str, Any] = {
        "targets": {"rx": {"url": url, "secret": SECRET, "timeout_s": 2}},
        "rules": [{"target": "rx", **rule} for rule in rules]
        or [{"name": "door", "entities": ["binary_sensor.door"], "to": "on", "target": "rx"}],
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        **overrides,
    }
    return WebhookSettings.model_validate(data)


class Door:
    """Live changes of one entity, each with the previous state as old_state."""

    def __init__(self, service: WebhookService, entity_id: str = "binary_sensor.door") -> None:
        self.service = service
        self.entity_id = entity_id
        self.last: EntityState | None = None
        self.n = 0

    def set(self, state: str, **attributes: Any) -> None:
        self.n += 1
        stamp = f"2024-03-01T12:00:{self.n % 60:02d}.000000+00:00"
        new = EntityState(self.entity_id, state, {"n": self.n, **attributes}, stamp, stamp, time.time_ns())
        self.service.on_change(StateChange(self.entity_id, new, self.last, "live"))
        self.last = new

    def open_close(self, times: int) -> None:
        for _ in range(times):
            self.set("on")
            self.set("off")


_RUNNING: dict[int, list[asyncio.Task[None]]] = {}


async def started(settings: WebhookSettings, db: Path) -> WebhookService:
    """The service as the app runs it: started, with its outbox writer and dispatcher as tasks."""
    service = WebhookService(settings, db)
    await service.start()
    _RUNNING[id(service)] = [
        asyncio.create_task(service.run_writer(), name="homeiq-webhook-outbox"),
        asyncio.create_task(service.dispatcher.run(), name="homeiq-webhook-dispatcher"),
    ]
    return service


STOP_BUDGET_S = 5.0


async def stop(service: WebhookService) -> None:
    """Stop as the app does, and fail if the stop hangs past its budget plus the dispatcher's grace or leaves
    a webhook task running."""
    limit_s = STOP_BUDGET_S + STOP_GRACE_S + 5
    try:
        await asyncio.wait_for(service.stop(time.monotonic() + STOP_BUDGET_S), limit_s)
    except TimeoutError:
        raise AssertionError(f"the webhook service did not stop within {limit_s:g} s") from None
    tasks = _RUNNING.pop(id(service), [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("homeiq-webhook") and not t.done()]
    assert left == [], f"tasks still running after stop: {left}"


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    await eventually(predicate, "the webhook service", timeout)


async def test_delivered_signed_and_recorded(receiver: Receiver, tmp_path: Path) -> None:
    service = await started(settings_for(receiver.url), tmp_path / "webhooks.db")
    try:
        door = Door(service)
        door.set("off")
        door.set("on")
        [got] = await receiver.wait_for(1)
        payload = Webhook(SECRET).verify(got.body, got.headers)
        assert payload["rule"] == "door"
        assert payload["entity_id"] == "binary_sensor.door"
        assert payload["new_state"]["state"] == "on"
        assert payload["old_state"]["state"] == "off"
        assert payload["delivery_id"] == got.webhook_id
        assert got.headers["content-type"] == "application/json"
        await wait_until(lambda: service.stats.deliveries["delivered"] == 1)
        assert len(service.stats.latency_s) == 1
        assert service.stats.latency_s[0] >= 0
    finally:
        await stop(service)
    [row] = read_log(tmp_path / "webhooks.db")
    assert (row.status, row.attempts, row.last_status, row.id) == ("delivered", 1, 200, got.webhook_id)


async def test_receiver_down_then_back(receiver: Receiver, tmp_path: Path) -> None:
    await receiver.stop()  # connection refused for a while
    service = await started(settings_for(receiver.url), tmp_path / "webhooks.db")
    try:
        door = Door(service)
        door.open_close(3)
        await wait_until(lambda: service.stats.attempts >= 4)
        assert service.stats.deliveries["delivered"] == 0
        await receiver.start()
        got = await receiver.wait_for(3)
        await wait_until(lambda: service.stats.deliveries["delivered"] == 3)
        assert [r.json["new_state"]["attributes"]["n"] for r in got] == [1, 3, 5]  # type: ignore[index]
        assert len({r.webhook_id for r in got}) == 3
        assert service.stats.retries >= 3
        assert service.stats.attempt_errors["no_answer"] >= 3
    finally:
        await stop(service)


async def test_retry_after_is_honoured_and_id_is_stable(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answer(503, headers={"Retry-After": "1"})
    receiver.answer(429, headers={"Retry-After": "1"})
    service = await started(settings_for(receiver.url), tmp_path / "webhooks.db")
    try:
        with capture_logs() as logs:
            Door(service).open_close(1)
            got = await receiver.wait_for(3, timeout=30)
        assert [r.status for r in got] == [503, 429, 200]
        # The delay scheduled after each refusal is the server's Retry-After (backoff alone: 0.05-0.2 s).
        retries = [e for e in logs if e["event"] == "webhook.retrying"]
        assert [(e["status"], e["retry_in_s"]) for e in retries] == [(503, 1.0), (429, 1.0)]
        assert len({r.webhook_id for r in got}) == 1
        assert len({r.headers["webhook-signature"] for r in got}) >= 1
        for r in got:
            Webhook(SECRET).verify(r.body, r.headers)
    finally:
        await stop(service)


async def test_client_error_is_final_and_408_is_retried(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answer(408)
    receiver.answer(404, body="no such hook")
    service = await started(settings_for(receiver.url), tmp_path / "webhooks.db")
    try:
        Door(service).open_close(1)
        await wait_until(lambda: service.stats.deliveries["rejected"] == 1)
    finally:
        await stop(service)
    assert [r.status for r in receiver.received] == [408, 404]  # stopped: nothing more can be on its way
    [row] = read_log(tmp_path / "webhooks.db", failed_only=True)
    assert (row.status, row.last_status, row.attempts) == ("rejected", 404, 2)
    assert row.last_error is not None
    assert "no such hook" in row.last_error


async def test_dead_letter_after_horizon(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default_status = 500
    service = await started(settings_for(receiver.url, horizon_s=1.0), tmp_path / "webhooks.db")
    try:
        Door(service).open_close(1)
        await wait_until(lambda: service.stats.dead_letters == 1)
        attempts = len(receiver.received)
        assert attempts >= 3
    finally:
        await stop(service)
    assert len(receiver.received) == attempts  # nothing after the dead letter
    [row] = read_log(tmp_path / "webhooks.db", failed_only=True)
    assert row.status == "dead"
    assert row.last_status == 500


async def test_per_rule_order_while_retrying(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answer(503, times=3)  # the first delivery needs four attempts
    service = await started(settings_for(receiver.url), tmp_path / "webhooks.db")
    try:
        Door(service).open_close(4)
        await receiver.wait_for(4, delivered=True)
        ids_in_arrival = [r.webhook_id for r in receiver.received]
        first = ids_in_arrival[0]
        assert ids_in_arrival[:4] == [first] * 4  # nobody overtook the delivery being retried
        numbers = [r.json["new_state"]["attributes"]["n"] for r in receiver.delivered]  # type: ignore[index]
        assert numbers == [1, 3, 5, 7]
    finally:
        await stop(service)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_per_target_concurrency(receiver: Receiver, tmp_path: Path, concurrency: int) -> None:
    receiver.delay_s = 0.2
    rules = [{"name": f"r{i}", "entities": [f"binary_sensor.d{i}"], "to": "on"} for i in range(4)]
    settings = settings_for(receiver.url, *rules, concurrency=concurrency)
    service = await started(settings, tmp_path / "webhooks.db")
    try:
        for i in range(4):
            Door(service, f"binary_sensor.d{i}").open_close(1)
        await receiver.wait_for(4, timeout=10)
        assert receiver.max_in_flight == concurrency
    finally:
        await stop(service)


async def test_restart_mid_retry_delivers_once(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "webhooks.db"
    receiver.default_status = 503
    service = await started(settings_for(receiver.url, retry_initial_s=0.2), db)
    Door(service).open_close(2)
    await receiver.wait_for(2)
    await stop(service)  # what SIGTERM does: unfinished deliveries stay pending
    pending = [row for row in read_log(db) if row.status == "pending"]
    assert len(pending) == 2
    assert pending[-1].attempts >= 1
    # Stopped means stopped: the helper checked that no webhook task is left to send anything.

    receiver.default_status = 200
    service = await started(settings_for(receiver.url), db)
    try:
        await receiver.wait_for(2, delivered=True)
    finally:
        await stop(service)
    delivered_ids = [r.webhook_id for r in receiver.delivered]
    assert sorted(delivered_ids) == sorted(row.id for row in pending)
    assert len(delivered_ids) == 2  # once each
    first_seen = [r.webhook_id for r in receiver.received]
    assert first_seen.index(pending[-1].id) < first_seen.index(pending[0].id)  # (log is newest first)
    assert {row.status for row in read_log(db)} == {"delivered"}


async def test_hanging_receiver_never_slows_the_pipeline(receiver: Receiver, tmp_path: Path) -> None:
    receiver.hang = True
    rules = [{"name": "all", "domains": ["sensor"]}]
    service = await started(settings_for(receiver.url, *rules), tmp_path / "webhooks.db")
    try:
        sensor = Door(service, "sensor.power")
        # The pipeline hands changes over with a plain call: it cannot wait on the network by construction
        # (how fast it is belongs in bench/). 2000 changes are taken while the only request hangs.
        assert not asyncio.iscoroutinefunction(service.on_change)
        for value in range(2000):
            sensor.set(str(value))
            if value % 100 == 0:
                await asyncio.sleep(0)  # let the outbox writer and lanes run, as the event loop would
        await wait_until(lambda: service.stats.pending == 2000)
        assert receiver.in_flight == 1  # one rule: its lane waits on the hanging request, in order
    finally:
        await stop(service)  # fails on a stop the hanging request holds past its deadline
    assert len(read_log(tmp_path / "webhooks.db", limit=5000)) == 2000


async def test_outbox_bound_drops_and_counts(receiver: Receiver, tmp_path: Path) -> None:
    receiver.hang = True
    service = await started(settings_for(receiver.url, max_pending=5), tmp_path / "webhooks.db")
    try:
        Door(service).open_close(8)
        await wait_until(lambda: service.stats.deliveries["dropped"] == 3 and service.stats.pending == 5)
    finally:
        await stop(service)
    assert service.stats.deliveries["dropped"] == 3  # and no more once everything settled


async def test_removed_target_is_dead_lettered(receiver: Receiver, tmp_path: Path) -> None:
    db = tmp_path / "webhooks.db"
    receiver.default_status = 503
    service = await started(settings_for(receiver.url), db)
    Door(service).open_close(1)
    await receiver.wait_for(1)
    await stop(service)
    other = WebhookSettings.model_validate({"rules": [{"name": "x", "entities": ["a.b"], "url": receiver.url}]})
    service = await started(other, db)
    try:
        await wait_until(lambda: service.stats.dead_letters == 1)
    finally:
        await stop(service)
    [row] = read_log(db)
    assert row.status == "dead"
    assert "no longer configured" in (row.last_error or "")


async def test_outbox_file_is_closed_to_others_and_wal(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "webhooks.db"
    service = await started(settings_for(receiver.url), db)
    await stop(service)
    assert db.stat().st_mode & 0o777 == 0o640  # the service group reads it (webhooks log), others never
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_damaged_outbox_is_one_clear_error(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "webhooks.db"
    damaged = b"this is not a database" * 100
    db.write_bytes(damaged)
    service = WebhookService(settings_for(receiver.url), db)
    # The same line and exit code (78) as a damaged homeiq.db or history.db, and the file is kept as it was.
    with pytest.raises(ConfigError, match=r"webhooks\.db is not a usable SQLite database .*move it away"):
        await service.start()
    assert db.read_bytes() == damaged
