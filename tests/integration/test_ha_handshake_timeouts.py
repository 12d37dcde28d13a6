"""Every wait while connecting to Home Assistant is bounded: a peer that accepts TCP and never answers the
WebSocket upgrade, one that upgrades and never sends ``auth_required``, and one that never answers ``auth``
each cost one ``handshake_timeout_s``, then the normal reconnect backoff follows (no hang, no tight loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from homeiq_daemon.config import BatchSettings, HomeAssistantSettings, MappingSettings
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource
from tests.support.daemon import wait_for


class SilentPeer:
    """A loopback server in one of three silent modes; counts the connections it saw."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.auth_messages = 0
        self._servers: list[asyncio.Server] = []
        self._runner: web.AppRunner | None = None
        self._hold = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        if self.mode == "tcp":
            server = await asyncio.start_server(self._tcp, "127.0.0.1", 0)
            self._servers.append(server)
            self.port = server.sockets[0].getsockname()[1]
            return
        app = web.Application()
        app.router.add_get("/api/websocket", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._hold.set()
        for server in self._servers:
            server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(65536)  # take the upgrade request, answer nothing
        await self._hold.wait()
        writer.close()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self.connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.mode == "no_auth_ok":
            await ws.send_json({"type": "auth_required", "ha_version": "2024.3.3"})
            await ws.receive()
            self.auth_messages += 1
        await self._hold.wait()
        return ws


@pytest.fixture
async def peer_factory() -> AsyncIterator[Callable[[str], Awaitable[SilentPeer]]]:
    peers: list[SilentPeer] = []

    async def make(mode: str) -> SilentPeer:
        peer = SilentPeer(mode)
        await peer.start()
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        await peer.stop()


@pytest.mark.parametrize("mode", ["tcp", "no_auth_required", "no_auth_ok"])
async def test_a_silent_peer_is_dropped_and_retried(
    peer_factory: Callable[[str], Awaitable[SilentPeer]], mode: str
) -> None:
    peer = await peer_factory(mode)
    settings = HomeAssistantSettings(
        url=f"http://127.0.0.1:{peer.port}", token="t", handshake_timeout_s=0.3,
        reconnect_initial_s=0.05, reconnect_max_s=0.1,
    )  # fmt: skip
    stats = Stats()
    batches: list[object] = []
    pipeline = Pipeline(MappingSettings(), BatchSettings(), stats, on_batch=batches.append)
    source = HomeAssistantSource(settings, pipeline, stats)
    task = asyncio.create_task(source.run())
    try:
        await wait_for(lambda: (peer.connections >= 3 and stats.reconnects >= 3) or task.done(), timeout_s=30)
        assert not task.done(), task.exception()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not source.connected.is_set()
    assert stats.hub_state in ("connecting", "disconnected")
    assert batches == []  # no connection ever got past the handshake
    if mode == "no_auth_ok":
        assert peer.auth_messages >= 2  # it got as far as sending the token, each time
