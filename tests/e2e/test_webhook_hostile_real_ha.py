"""The homeiq_webhook integration inside the real Home Assistant 2024.3.3, against hostile deliveries:
400- and 5,000-digit timestamps are refused deliveries (401, no traceback, no webhook id in HA's log);
replay protection is not flushed by a thousand other deliveries and survives a restart of HA; a
``tolerance_s`` over the maximum is refused by HA's own config validation."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from homeiq_daemon.webhooks.signing import encode_secret, sign_headers
from tests.support.ha_webhooks import INTEGRATION_DIR, HomeAssistantWithWebhooks

pytestmark = pytest.mark.ha

HOOK_ID = "homeiq-hostile-" + secrets.token_hex(16)
KEY = os.urandom(32)


@pytest.fixture(scope="module")
def ha(ha_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistantWithWebhooks]:
    instance = HomeAssistantWithWebhooks(
        tmp_path_factory.mktemp("ha-hostile"), ha_venv,
        verified_hooks=[{"webhook_id": HOOK_ID, "secret": encode_secret(KEY)}],
    )  # fmt: skip
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


async def post_all(url: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[tuple[int, str]]:
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for body, headers in deliveries:
            async with session.post(url, data=body, headers=headers) as response:
                out.append((response.status, await response.text()))
    return out


def url_of(ha: HomeAssistantWithWebhooks) -> str:
    return f"{ha.base_url}/api/webhook/{HOOK_ID}"


async def test_absurd_timestamps_are_refused_deliveries(ha: HomeAssistantWithWebhooks) -> None:
    offset = ha.log_size()
    body = b'{"rule": "x"}'
    deliveries = []
    for digits in (400, 4000):
        deliveries.append((body, sign_headers([KEY], f"msg_big_{digits}", int("9" * digits), body)))
    deliveries.append((body, {"webhook-id": "msg_5000", "webhook-timestamp": "9" * 5000,
                              "webhook-signature": "v1,AAAA"}))  # fmt: skip
    answers = await post_all(url_of(ha), deliveries)
    assert [status for status, _ in answers] == [401, 401, 401], answers
    assert all("not a number of seconds" in text for _, text in answers)
    log = ha.log_text()[offset:]
    assert HOOK_ID not in log
    assert HOOK_ID[-16:] not in log
    assert "Traceback" not in log
    assert "OverflowError" not in log


async def test_replay_protection_outlasts_a_flood_and_a_restart(ha: HomeAssistantWithWebhooks) -> None:
    now = int(time.time())
    body = b'{"rule": "replayed"}'
    victim = (body, sign_headers([KEY], "msg_victim", now, body))
    assert await post_all(url_of(ha), [victim]) == [(200, "ok")]
    # More distinct deliveries than the old 1,024-id memory held: a replay is still recognised.
    flood = [(body, sign_headers([KEY], f"msg_flood_{i}", now, body)) for i in range(1100)]
    answers = await post_all(url_of(ha), flood)
    assert {a for a in answers} == {(200, "ok")}
    assert await post_all(url_of(ha), [victim]) == [(200, "duplicate")]
    # HA restarts (within the tolerance window): the captured delivery is still a duplicate.
    await asyncio.to_thread(ha.restart)
    assert await post_all(url_of(ha), [victim]) == [(200, "duplicate")]
    fresh = (body, sign_headers([KEY], "msg_after_restart", int(time.time()), body))
    assert await post_all(url_of(ha), [fresh]) == [(200, "ok")]
    assert HOOK_ID not in ha.log_text()


def test_tolerance_over_the_maximum_is_refused_by_ha_config_validation(ha_venv: Path) -> None:
    """HA's own voluptuous schema (config_validation from the real package) applied to the integration's."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from homeiq_webhook import HOOK_SCHEMA;"
        "import voluptuous as vol;"
        "base = {'webhook_id': 'x', 'secret': 'whsec_' + 'A' * 24};"
        "HOOK_SCHEMA({**base, 'tolerance_s': 3600});"
        "HOOK_SCHEMA({**base, 'tolerance_s': 100000})"
    )
    python = ha_venv / "bin" / "python"
    result = subprocess.run([str(python), "-c", script, str(INTEGRATION_DIR.parent)], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "value must be at most 3600" in result.stderr, result.stderr[-2000:]
