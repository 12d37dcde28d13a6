"""``homeiq switchbot setup-webhook | query-webhook | delete-webhook`` against the loopback fake Cloud API (which
checks every signature with the switchbot-api package)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from homeiq_daemon import cli
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_NOPERM, EXIT_OK
from tests.support.fake_switchbot import FakeSwitchBotCloud

PATH_SECRET = "fedcba9876543210fedcba9876543210"
URL = f"https://home.example.net/switchbot/webhook/{PATH_SECRET}"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeSwitchBotCloud]:
    fake = FakeSwitchBotCloud()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def config(tmp_path: Path, fake: FakeSwitchBotCloud, token: str | None = None) -> Path:
    path = tmp_path / "homeiq.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[switchbot]\ntoken = "{token or fake.token}"\n'
        f'secret = "{fake.secret}"\nbase_url = "{fake.base_url}"\nwebhook_path_secret = "{PATH_SECRET}"\n'
        "timeout_s = 5.0\n"
    )
    return path


async def homeiq(*argv: str) -> int:
    # the CLI runs its own event loop: give it a thread, while the fake keeps serving on this one
    return await asyncio.to_thread(cli.main, list(argv))


async def test_setup_query_delete(
    tmp_path: Path, cloud: FakeSwitchBotCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(config(tmp_path, cloud))
    assert await homeiq("--config", conf, "switchbot", "setup-webhook", URL) == EXIT_OK
    assert cloud.webhook_urls == [URL]
    out, err = capsys.readouterr()
    assert out == "SwitchBot now pushes every device's changes to https://home.example.net/switchbot/webhook/**********\n"
    assert err == ""
    assert cloud.requests[-1].body == {"action": "setupWebhook", "url": URL, "deviceList": "ALL"}

    assert await homeiq("--config", conf, "switchbot", "query-webhook") == EXIT_OK
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["urls"] == ["https://home.example.net/switchbot/webhook/**********"]
    assert shown["details"][0]["enable"] is True
    assert PATH_SECRET not in str(shown)

    assert await homeiq("--config", conf, "switchbot", "delete-webhook") == EXIT_OK
    assert cloud.webhook_urls == []
    assert capsys.readouterr().out == "deleted https://home.example.net/switchbot/webhook/**********\n"
    assert await homeiq("--config", conf, "switchbot", "delete-webhook") == EXIT_OK
    assert "nothing to delete" in capsys.readouterr().err

    assert [r.path for r in cloud.requests] == [
        "/v1.1/webhook/setupWebhook",
        "/v1.1/webhook/queryWebhook",  # queryUrl
        "/v1.1/webhook/queryWebhook",  # queryDetails
        "/v1.1/webhook/queryWebhook",
        "/v1.1/webhook/deleteWebhook",
        "/v1.1/webhook/queryWebhook",
    ]
    assert cloud.bad_signatures == []
    assert all(r.headers["t"].isdigit() for r in cloud.requests)


async def test_a_url_off_the_receiver_path_warns(
    tmp_path: Path, cloud: FakeSwitchBotCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(config(tmp_path, cloud))
    assert await homeiq("--config", conf, "switchbot", "setup-webhook", "http://home.example.net/hook") == EXIT_OK
    err = capsys.readouterr().err
    assert "this URL's path is different" in err
    assert "plain http" in err
    assert cloud.webhook_urls == ["http://home.example.net/hook"]


async def test_wrong_token_exits_77(
    tmp_path: Path, cloud: FakeSwitchBotCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(config(tmp_path, cloud, token="not-the-token-000000000000000000"))
    assert await homeiq("--config", conf, "switchbot", "query-webhook") == EXIT_NOPERM
    err = capsys.readouterr().err
    assert "HTTP 401" in err
    assert "not-the-token" not in err
    assert len(cloud.requests) == 1  # a refused token is not retried


async def test_no_credentials_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "homeiq.toml"
    path.write_text(f'state_dir = "{tmp_path}"\n')
    assert await homeiq("--config", str(path), "switchbot", "query-webhook") == EXIT_CONFIG
    assert "switchbot.token" in capsys.readouterr().err
