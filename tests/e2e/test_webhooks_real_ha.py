"""Webhooks end to end against the real Home Assistant 2024.3.3 on loopback.

A state change in HA reaches the daemon over the WebSocket, a rule fires, and the delivery lands back in
HA: (a) at a plain ``platform: webhook`` trigger (``local_only``) whose automation sets an input_text;
(b) at this repo's ``homeiq_webhook`` custom integration, which verifies the Standard Webhooks signature,
fires ``homeiq_webhook`` events for automations, answers 401 to forged and stale deliveries and does not
fire a repeated delivery id twice. ``homeiq webhooks test`` is checked against the same HA.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from homeiq_daemon import cli
from homeiq_daemon.app import App
from homeiq_daemon.config import load_settings
from homeiq_daemon.webhooks.outbox import read_log
from homeiq_daemon.webhooks.signing import encode_secret, sign_headers
from tests.support.daemon import eventually as poll
from tests.support.daemon import start_app, stop_app
from tests.support.ha_webhooks import HomeAssistantWithWebhooks

pytestmark = pytest.mark.ha

PLAIN_ID = "homeiq-plain-" + secrets.token_hex(16)
VERIFIED_ID = "homeiq-verified-" + secrets.token_hex(16)
KEY = os.urandom(32)
SECRET = encode_secret(KEY)

AUTOMATIONS: list[dict[str, Any]] = [
    {
        "id": "homeiq_plain",
        "alias": "homeiq plain webhook",
        "trigger": [{"platform": "webhook", "webhook_id": PLAIN_ID, "allowed_methods": ["POST"], "local_only": True}],
        "action": [
            {
                "service": "input_text.set_value",
                "target": {"entity_id": "input_text.e2e_note"},
                "data": {"value": "plain {{ trigger.json.rule }} {{ trigger.json.new_state.state }}"},
            }
        ],
    },
    {
        "id": "homeiq_verified",
        "alias": "homeiq verified webhook",
        "mode": "queued",
        "trigger": [{"platform": "event", "event_type": "homeiq_webhook", "event_data": {"rule": "level_high"}}],
        "action": [
            {
                "service": "input_text.set_value",
                "target": {"entity_id": "input_text.e2e_verified"},
                "data": {"value": "{{ trigger.event.data.new_state.state }} {{ trigger.event.data.delivery_id }}"},
            },
            {"service": "input_number.increment", "target": {"entity_id": "input_number.e2e_count"}},
        ],
    },
]


@pytest.fixture(scope="module")
def ha(ha_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistantWithWebhooks]:
    instance = HomeAssistantWithWebhooks(
        tmp_path_factory.mktemp("ha-webhooks"),
        ha_venv,
        verified_hooks=[{"webhook_id": VERIFIED_ID, "secret": SECRET}],
        input_text={"e2e_note": {"name": "note", "max": 255}, "e2e_verified": {"name": "verified", "max": 255}},
        input_number={
            "e2e_level": {"name": "level", "min": 0, "max": 100, "step": 1},
            "e2e_count": {"name": "count", "min": 0, "max": 1000, "step": 1},
        },
        input_boolean={"e2e_switch": {"name": "switch"}},
    )
    instance.start()
    try:
        instance.write_automations(AUTOMATIONS)
        instance.reload_automations()
        yield instance
    finally:
        instance.stop()


def webhook_settings(ha: HomeAssistantWithWebhooks) -> dict[str, Any]:
    return {
        "targets": {"verified": {"url": f"{ha.base_url}/api/webhook/{VERIFIED_ID}", "secret": SECRET}},
        "rules": [
            {
                "name": "switch_on",
                "entities": ["input_boolean.e2e_switch"],
                "to": "on",
                "url": f"{ha.base_url}/api/webhook/{PLAIN_ID}",
            },
            {"name": "level_high", "entities": ["input_number.e2e_level"], "above": 50, "target": "verified"},
        ],
        "retry_initial_s": 0.1,
        "retry_max_s": 0.5,
    }


@contextlib.asynccontextmanager
async def daemon(ha: HomeAssistantWithWebhooks, state_dir: Path) -> AsyncIterator[App]:
    settings = load_settings(
        None,
        state_dir=state_dir,
        home_assistant={"url": ha.base_url, "token": ha.token},
        http={"enabled": False},
        spool={"fsync": False},
        shutdown_timeout_s=5.0,
        webhooks=webhook_settings(ha),
    )
    app = App(settings)
    task = await start_app(app)
    try:
        yield app
    finally:
        await stop_app(app, task)  # fails on a crash or a stop past its deadline


async def wait_until_taken(app: App, entity_id: str, value: str) -> None:
    def taken() -> bool:
        state = app.pipeline.states.get(entity_id) if app.pipeline is not None else None
        return state is not None and state.state == value

    await poll(taken, f"the daemon to take {entity_id} = {value}")


async def state_of(ha: HomeAssistantWithWebhooks, entity_id: str) -> str:
    state = await asyncio.to_thread(ha.get_state, entity_id)
    return "" if state is None else str(state["state"])


async def eventually(ha: HomeAssistantWithWebhooks, entity_id: str, check: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 30
    while True:
        value = await state_of(ha, entity_id)
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{entity_id} is {value!r}; HA log:\n{ha.log_tail()}")
        await asyncio.sleep(0.1)


async def service(ha: HomeAssistantWithWebhooks, domain: str, name: str, data: dict[str, Any]) -> None:
    await asyncio.to_thread(ha.call_service, domain, name, data)


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.text()


async def test_rule_fires_plain_ha_webhook_automation(ha: HomeAssistantWithWebhooks, tmp_path: Path) -> None:
    await service(ha, "input_boolean", "turn_off", {"entity_id": "input_boolean.e2e_switch"})
    await service(ha, "input_text", "set_value", {"entity_id": "input_text.e2e_note", "value": "idle"})
    async with daemon(ha, tmp_path) as app:
        assert app.webhooks is not None
        await service(ha, "input_boolean", "turn_on", {"entity_id": "input_boolean.e2e_switch"})
        assert await eventually(ha, "input_text.e2e_note", lambda v: v != "idle") == "plain switch_on on"
        # HA may run the automation before the daemon has recorded HA's 200 (two processes): wait for it.
        webhooks = app.webhooks
        await poll(lambda: webhooks.stats.deliveries["delivered"] >= 1, "the delivery to be recorded")
        assert webhooks.stats.deliveries["delivered"] == 1
        assert 'homeiq_webhook_deliveries_total{outcome="delivered"} 1.0' in app.metrics.render().decode()
    [row] = read_log(tmp_path / "webhooks.db")
    assert (row.rule, row.status, row.last_status, row.attempts) == ("switch_on", "delivered", 200, 1)


async def test_verified_integration_fires_event_and_refuses_forgeries(
    ha: HomeAssistantWithWebhooks, tmp_path: Path
) -> None:
    await service(ha, "input_number", "set_value", {"entity_id": "input_number.e2e_level", "value": 10})
    await service(ha, "input_number", "set_value", {"entity_id": "input_number.e2e_count", "value": 0})
    async with daemon(ha, tmp_path) as app:
        await service(ha, "input_number", "set_value", {"entity_id": "input_number.e2e_level", "value": 75})
        await eventually(ha, "input_number.e2e_count", lambda v: v == "1.0")
        verified = await state_of(ha, "input_text.e2e_verified")
        await service(ha, "input_number", "set_value", {"entity_id": "input_number.e2e_level", "value": 80})
        # Staying above the line is no new crossing: once the daemon has taken the change, nothing is sent
        # (the outbox below, read after the stop, holds the one delivery).
        await wait_until_taken(app, "input_number.e2e_level", "80.0")
    [row] = read_log(tmp_path / "webhooks.db")
    assert (row.rule, row.status, row.last_status) == ("level_high", "delivered", 200)
    assert verified == f"75.0 {row.id}"

    url = f"{ha.base_url}/api/webhook/{VERIFIED_ID}"
    now = int(time.time())
    body = row.body
    forged = sign_headers([os.urandom(32)], "msg_forged", now, body)
    assert (await post(url, body, forged))[0] == 401
    stale = sign_headers([KEY], "msg_stale", now - 600, body)
    assert (await post(url, body, stale))[0] == 401
    tampered = body.replace(b'"75.0"', b'"99.0"')
    assert tampered != body
    assert (await post(url, tampered, sign_headers([KEY], "msg_t", now, body)))[0] == 401
    assert (await post(url, body, {"webhook-id": "msg_u", "webhook-timestamp": str(now)}))[0] == 401
    # A retry of the delivered id (its first answer lost, say): accepted, not fired again.
    status, text = await post(url, body, sign_headers([KEY], row.id, now, body))
    assert (status, text) == (200, "duplicate")
    # A genuine new delivery still works after all that.
    fresh = orjson.loads(body)
    fresh["new_state"]["state"] = "88.0"
    fresh_body = orjson.dumps(fresh)
    assert (await post(url, fresh_body, sign_headers([KEY], "msg_fresh1", now, fresh_body))) == (200, "ok")
    await eventually(ha, "input_number.e2e_count", lambda v: v == "2.0")
    assert await state_of(ha, "input_text.e2e_verified") == "88.0 msg_fresh1"
    assert ha.count_in_log(": refused a delivery from ") >= 4
    assert VERIFIED_ID not in ha.log_text()  # the id is the credential: HA's log never shows it


async def test_cli_test_delivery_reaches_the_integration(
    ha: HomeAssistantWithWebhooks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await service(ha, "input_number", "set_value", {"entity_id": "input_number.e2e_count", "value": 0})
    config = tmp_path / "homeiq.toml"
    hooks = webhook_settings(ha)
    config.write_text(
        f'state_dir = "{tmp_path}"\n'
        f'[webhooks.targets.verified]\nurl = "{hooks["targets"]["verified"]["url"]}"\nsecret = "{SECRET}"\n'
        '[[webhooks.rules]]\nname = "level_high"\nentities = ["input_number.e2e_level"]\nabove = 50\n'
        'target = "verified"\n'
    )
    exit_code = await asyncio.to_thread(cli.main, ["--config", str(config), "webhooks", "test", "level_high"])
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert "-> HTTP 200" in out
    assert "\nok\n" in out
    assert VERIFIED_ID not in out
    await eventually(ha, "input_number.e2e_count", lambda v: v == "1.0")
    assert (await state_of(ha, "input_text.e2e_verified")).startswith("test msg_")

    # The same command with a wrong secret: the integration answers 401, the command says so and fails.
    config.write_text(config.read_text().replace(SECRET, encode_secret(os.urandom(32))))
    exit_code = await asyncio.to_thread(cli.main, ["--config", str(config), "webhooks", "test", "level_high"])
    out = capsys.readouterr().out
    assert exit_code == 1
    assert "-> HTTP 401" in out
    assert "no valid signature" in out
