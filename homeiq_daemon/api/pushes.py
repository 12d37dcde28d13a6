"""Pushes the HTTP server receives (SwitchBot's ``POST /switchbot/webhook/<path secret>``), read defensively.

The path's secret is checked (constant-time, by the source) before any of the body is read: a wrong one is
a 404, as for any unknown path. The body is read up to ``MAX_PUSH_BYTES`` (also when chunked, with no
Content-Length to check) within ``PUSH_BODY_TIMEOUT_S``; a client that sends more, too slowly, or hangs up
mid-body gets a 413, 408 or 400 and nothing is logged (the path, which holds the secret, least of all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from homeiq_daemon.sources.switchbot.readings import MAX_WEBHOOK_BYTES

MAX_PUSH_BYTES = MAX_WEBHOOK_BYTES
PUSH_BODY_TIMEOUT_S = 10.0

Reply = tuple[int, dict[str, Any]]


def _error(status: int, message: str) -> Reply:
    return status, {"error": message, "status": status}


async def receive_switchbot_push(
    request: web.Request,
    secret_ok: Callable[[str], bool] | None,
    receiver: Callable[[str, bytes], Reply] | None,
) -> Reply:
    secret = request.match_info["secret"]
    if receiver is None or (secret_ok is not None and not secret_ok(secret)):
        return _error(404, "Not Found")
    if (request.content_length or 0) > MAX_PUSH_BYTES:
        return _error(413, f"body over {MAX_PUSH_BYTES} bytes")
    try:
        async with asyncio.timeout(PUSH_BODY_TIMEOUT_S):
            body = await _read_capped(request, MAX_PUSH_BYTES)
    except TimeoutError:
        return _error(408, f"body not received within {PUSH_BODY_TIMEOUT_S:g} s")
    except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        return _error(400, "the client went away during the body")
    if body is None:
        return _error(413, f"body over {MAX_PUSH_BYTES} bytes")
    return receiver(secret, body)


def switchbot_push_route(
    secret_ok: Callable[[str], bool], receiver: Callable[[str, bytes], Reply]
) -> tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]:
    """The SwitchBot source's route for ``ApiServer.add_route``: method, path and handler."""

    async def handle(request: web.Request) -> web.Response:
        status, reply = await receive_switchbot_push(request, secret_ok, receiver)
        return web.Response(body=orjson.dumps(reply), status=status, content_type="application/json")

    return "POST", "/switchbot/webhook/{secret}", handle


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
