"""The HTTP API's bearer token on a real socket: a bare or empty ``Authorization: Bearer`` never authorises,
and no spelling of an /api/ path (``//api``, ``/./api``, ``/x/../api``, percent-encoding) skips the check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from homeiq_daemon.api.server import ApiContext, ApiServer
from homeiq_daemon.config import HttpSettings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.metrics import Metrics
from homeiq_daemon.runtime.stats import Stats

TOKEN = "a-long-enough-api-token-0123"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    context = ApiContext(stats=Stats(), store=store, metrics=Metrics(), hub_configured=False, spool_max_bytes=1 << 20)
    api = ApiServer(HttpSettings(port=0, token=SecretStr(TOKEN)), context)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
        await store.close()


async def raw_request(port: int, target: str, headers: str = "") -> tuple[int, bytes]:
    """One request exactly as written (no client-side normalisation of the target)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize(
    "authorization",
    ["Authorization: Bearer\r\n", "Authorization: Bearer \r\n", "Authorization: bearer  \r\n",
     "Authorization: Bearer \t\r\n", "Authorization:\r\n", f"Authorization: Basic {TOKEN}\r\n",
     f"Authorization: Bearer {TOKEN[:-1]}\r\n", f"Authorization: Bearer {TOKEN}x\r\n"],
)  # fmt: skip
async def test_bare_or_wrong_bearer_never_authorises(server: ApiServer, authorization: str) -> None:
    assert server.port is not None
    status, data = await raw_request(server.port, "/api/v1/areas", authorization)
    assert status == 401, data
    assert TOKEN.encode() not in data


@pytest.mark.parametrize(
    "target", ["//api/v1/areas", "/./api/v1/areas", "/x/../api/v1/areas", "/%61pi/v1/areas", "/api//v1/areas"]
)
async def test_no_spelling_of_an_api_path_skips_the_token(server: ApiServer, target: str) -> None:
    assert server.port is not None
    status, data = await raw_request(server.port, target)
    assert status in (401, 404), data  # refused, or routed nowhere; never served
    assert b'"items"' not in data


async def test_a_blank_token_that_reaches_the_server_closes_the_api(tmp_path: Path) -> None:
    """Defence in depth: settings that skipped validation with a blank token and a LAN address do not make
    a bare ``Bearer`` header (or none) a key."""
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    context = ApiContext(stats=Stats(), store=store, metrics=Metrics(), hub_configured=False, spool_max_bytes=1 << 20)
    settings = HttpSettings.model_construct(host="127.0.0.1", port=0, token=SecretStr(""))
    api = ApiServer(settings, context)
    await api.start()
    try:
        assert api.port is not None
        for authorization in ("Authorization: Bearer\r\n", "Authorization: Bearer  \r\n", ""):
            status, data = await raw_request(api.port, "/api/v1/areas", authorization)
            assert status == 401, data
    finally:
        await api.stop()
        await store.close()


async def test_the_right_token_still_works(server: ApiServer) -> None:
    assert server.port is not None
    status, data = await raw_request(server.port, "/api/v1/areas", f"Authorization: Bearer {TOKEN}\r\n")
    assert status == 200, data
    status, _ = await raw_request(server.port, "/healthz")
    assert status in (200, 503)  # health stays open for probes
