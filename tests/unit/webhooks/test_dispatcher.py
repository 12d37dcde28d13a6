"""The webhook dispatcher without a network: a real outbox on SQLite, a client double answering from a script.
Outcomes (delivered, retried, final, dead after the horizon), what the outbox records, the signature each
attempt carries (checked with ``standardwebhooks``), and the status classification as documented."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from homeiq_daemon.config.webhooks import WebhookSettings
from homeiq_daemon.webhooks.client import AttemptResult, classify
from homeiq_daemon.webhooks.dispatcher import Dispatcher, Work
from homeiq_daemon.webhooks.outbox import NewDelivery, Outbox, read_log
from homeiq_daemon.webhooks.signing import encode_secret
from homeiq_daemon.webhooks.stats import WebhookStats
from tests.support.daemon import eventually

SECRET = encode_secret(os.urandom(32))
URL = "http://127.0.0.1:9/hook"


class ScriptedClient:
    """Answers each POST with the next scripted result (then 200), recording what was sent."""

    def __init__(self, *answers: AttemptResult) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float,
                   verify_ssl: bool = True) -> AttemptResult:
        self.sent.append((url, body, headers))
        return self.answers.pop(0) if self.answers else AttemptResult(200)

    async def close(self) -> None:
        return None


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "webhooks.db")
    await box.open()
    try:
        yield box
    finally:
        await box.close()


async def deliver(outbox: Outbox, client: ScriptedClient, **settings: Any) -> WebhookStats:
    config = WebhookSettings.model_validate({
        "targets": {"rx": {"url": URL, "secret": SECRET}},
        "rules": [{"name": "door", "entities": ["binary_sensor.door"], "target": "rx"}],
        "retry_initial_s": 0.01, "retry_max_s": 0.02, **settings,
    })
    now = time.time_ns()
    await outbox.add([NewDelivery("msg_1", "door", "rx", "binary_sensor.door", b'{"n": 1}', now, now)])
    stats = WebhookStats()
    dispatcher = Dispatcher(config, outbox, client, stats)  # type: ignore[arg-type]  # the double speaks post()
    for row in await outbox.pending():
        dispatcher.enqueue(Work.from_row(row))
    task = asyncio.create_task(dispatcher.run())
    try:
        await eventually(lambda: sum(stats.deliveries.values()) == 1, "the delivery to finish")
    finally:
        await dispatcher.stop(5.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return stats


async def test_retried_until_delivered_with_one_id_and_a_valid_signature(outbox: Outbox) -> None:
    client = ScriptedClient(AttemptResult(503), AttemptResult(None, error="connection refused"),
                            AttemptResult(429, retry_after_s=0.0))
    stats = await deliver(outbox, client)
    assert stats.deliveries == {"delivered": 1}
    assert (stats.attempts, stats.retries) == (4, 3)
    assert stats.attempt_errors == {"503": 1, "no_answer": 1, "429": 1}
    for url, body, headers in client.sent:
        assert url == URL
        assert Webhook(SECRET).verify(body, headers) == {"n": 1}
        assert headers["webhook-id"] == "msg_1"
    [row] = read_log(outbox.path)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 4, 200)


async def test_a_client_error_is_final(outbox: Outbox) -> None:
    stats = await deliver(outbox, ScriptedClient(AttemptResult(404, body="no such hook")))
    assert stats.deliveries == {"rejected": 1}
    [row] = read_log(outbox.path)
    assert (row.status, row.attempts, row.last_status) == ("rejected", 1, 404)
    assert row.last_error == "HTTP 404: no such hook"


async def test_retries_end_in_a_dead_letter_at_the_horizon(outbox: Outbox) -> None:
    client = ScriptedClient(*[AttemptResult(500)] * 10_000)
    stats = await deliver(outbox, client, horizon_s=0.3)
    assert stats.deliveries == {"dead": 1}
    assert stats.dead_letters == 1
    [row] = read_log(outbox.path)
    assert (row.status, row.last_status) == ("dead", 500)
    assert row.attempts == len(client.sent) >= 2


@given(st.one_of(st.none(), st.integers(100, 599)))
def test_status_classification_as_documented(status: int | None) -> None:
    if status is not None and 200 <= status < 300:
        assert classify(status) == "delivered"
    elif status is None or status in (408, 429) or status >= 500:
        assert classify(status) == "retry"
    else:
        assert classify(status) == "final"
