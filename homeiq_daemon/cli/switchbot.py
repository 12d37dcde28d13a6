"""``homeiq switchbot setup-webhook URL | query-webhook | delete-webhook [URL]``: the account's push URL.

SwitchBot pushes every device's changes to one URL per account (README, "Webhook"). These commands call the
Cloud API with the configured token and secret, whether or not the daemon runs; their few requests come out
of ``switchbot.reserved_requests``, not the daemon's count. The daemon's receiver path holds a secret
(``webhook_path_secret``), so URLs are printed with that part masked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import orjson

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.config import SwitchBotSettings
from homeiq_daemon.errors import EXIT_OK, ConfigError, HomeIQError
from homeiq_daemon.redaction import redact_url

RECEIVER_PATH = "/switchbot/webhook/"


def register(sub: Any) -> None:
    help_text = "set up, show or delete the SwitchBot Cloud webhook"
    switchbot = add_command(sub, "switchbot", cmd_switchbot, help=help_text)
    actions = switchbot.add_subparsers(dest="switchbot_command", metavar="ACTION", required=True)
    setup = add_command(actions, "setup-webhook", None, help="have SwitchBot push every device's changes to URL")
    setup.add_argument("url", help=f"public https URL that reaches the daemon's {RECEIVER_PATH}<webhook_path_secret>")
    add_command(actions, "query-webhook", None, help="show the URL SwitchBot pushes to, with its details")
    delete_help = "stop the pushes to URL (default: to every URL configured)"
    delete = add_command(actions, "delete-webhook", None, help=delete_help)
    delete.add_argument("url", nargs="?")


def mask(url: str) -> str:
    return redact_url(url)


def cmd_switchbot(args: argparse.Namespace, load: Loader) -> int:
    settings = load(read_only=True).switchbot
    if not settings.enabled:
        raise ConfigError(
            "switchbot.token and switchbot.secret are needed (or the switchbot_token and switchbot_secret credentials)"
        )
    if args.switchbot_command == "setup-webhook":
        _check_url(args.url, settings)
        return asyncio.run(_setup(settings, args.url))
    if args.switchbot_command == "query-webhook":
        return asyncio.run(_query(settings))
    return asyncio.run(_delete(settings, args.url))


def _check_url(url: str, settings: SwitchBotSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HomeIQError(f"setup-webhook: {url!r} is not an http(s) URL")
    secret = settings.webhook_path_secret
    if secret is None:
        sys.stderr.write("warning: switchbot.webhook_path_secret is not set, so the daemon has no receiver for "
                         "these pushes yet\n")  # fmt: skip
    elif not parts.path.rstrip("/").endswith(RECEIVER_PATH + secret.get_secret_value()):
        sys.stderr.write(f"warning: the daemon receives pushes at {RECEIVER_PATH}<webhook_path_secret>; this URL's "
                         "path is different (fine if a proxy rewrites it)\n")  # fmt: skip
    if parts.scheme != "https":
        sys.stderr.write("warning: pushes over plain http cross the internet unencrypted\n")


def _client(settings: SwitchBotSettings) -> Any:
    from homeiq_daemon.sources.switchbot.client import SwitchBotClient  # noqa: PLC0415 - aiohttp only when called

    return SwitchBotClient(settings)


async def _setup(settings: SwitchBotSettings, url: str) -> int:
    async with _client(settings) as client:
        await client.setup_webhook(url)
    sys.stdout.write(f"SwitchBot now pushes every device's changes to {mask(url)}\n")
    return EXIT_OK


async def _configured(client: Any) -> list[str]:
    body = await client.query_webhook()
    urls = body.get("urls") if isinstance(body, dict) else None
    return [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []


async def _query(settings: SwitchBotSettings) -> int:
    async with _client(settings) as client:
        urls = await _configured(client)
        details = await client.query_webhook_details(urls) if urls else []
    shown = [{**d, "url": mask(str(d.get("url", "")))} for d in details if isinstance(d, dict)]
    out = {"urls": [mask(u) for u in urls], "details": shown}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    if not urls:
        sys.stderr.write("no webhook is set up (homeiq switchbot setup-webhook URL)\n")
    return EXIT_OK


async def _delete(settings: SwitchBotSettings, url: str | None) -> int:
    async with _client(settings) as client:
        urls = [url] if url else await _configured(client)
        for each in urls:
            await client.delete_webhook(each)
    if not urls:
        sys.stderr.write("no webhook is set up: nothing to delete\n")
    for each in urls:
        sys.stdout.write(f"deleted {mask(each)}\n")
    return EXIT_OK
