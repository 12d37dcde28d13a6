"""The HTTP server's connection bounds on a real socket: a connection that sends nothing, or sends its headers
too slowly, is closed after ``http.idle_timeout_s``; beyond ``http.max_connections`` the longest-quiet
connection makes room, so a request still gets in; the limit stays below the descriptor limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from homeiq_daemon.api import connections
from homeiq_daemon.api.connections import RESERVED_FDS, connection_limit
from homeiq_daemon.api.server import ApiContext, ApiServer
from homeiq_daemon.config import HttpSettings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.metrics import Metrics
from homeiq_daemon.runtime.stats import Stats
from tests.support.idle_load import get


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[tuple[ApiServer, MetadataStore]] = []

    async def make(**http: object) -> ApiServer:
        store = MetadataStore(tmp_path / f"homeiq{len(started)}.db")
        await store.start()
        context = ApiContext(stats=Stats(), store=store, metrics=Metrics(), hub_configured=False,
                             spool_max_bytes=1 << 20)  # fmt: skip
        server = ApiServer(HttpSettings(port=0, **http), context)  # type: ignore[arg-type]
        await server.start()
        started.append((server, store))
        return server

    yield make  # type: ignore[misc]
    for server, store in started:
        await server.stop()
        await store.close()


async def closed_by_server(reader: asyncio.StreamReader, ceiling_s: float = 20.0) -> bytes:
    """Everything the server sent before closing; fails when it keeps the connection past the ceiling."""
    return await asyncio.wait_for(reader.read(), ceiling_s)


async def test_a_silent_connection_is_closed_after_the_idle_timeout(make_server: Callable[..., object]) -> None:
    server = await make_server(idle_timeout_s=0.3)  # type: ignore[operator]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert await closed_by_server(reader) == b""
    finally:
        writer.close()


async def test_slow_headers_are_cut_off_by_the_same_timeout(make_server: Callable[..., object]) -> None:
    server = await make_server(idle_timeout_s=0.5)  # type: ignore[operator]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    closed = asyncio.ensure_future(closed_by_server(reader))
    try:
        # One header line every 0.1 s, for ever: the request is never complete, the connection must go.
        for i in range(400):
            if closed.done():
                break
            writer.write(f"GET /healthz HTTP/1.1\r\nX-Slow-{i}: 1\r\n".encode() if i == 0 else f"X-{i}: 1\r\n".encode())
            await asyncio.sleep(0.1)  # the attacker's pace, not a synchronisation
        assert closed.done(), "the server kept a slow-header connection open for 40 s"
        assert b"200" not in closed.result()
    finally:
        closed.cancel()
        writer.close()


async def test_beyond_the_limit_the_quietest_connection_makes_room(
    make_server: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "SILENT_GRACE_S", 0.0)
    server = await make_server(max_connections=8, idle_timeout_s=60)  # type: ignore[operator]
    guard = server.connections
    assert guard is not None
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(30)]
    try:
        for _ in range(20):
            probe = await get(server.port, "/healthz")
            assert probe.http_status is not None, probe.error
        assert guard.stats.open <= 8
        assert guard.stats.evicted >= 30 - 8  # the probes close their own connections
        assert guard.stats.refused == 0
        metrics = server.ctx.metrics.render().decode()
        assert "homeiq_http_connections_limit 8.0" in metrics
        assert 'homeiq_http_connections_handled_total{outcome="evicted"}' in metrics
    finally:
        for _, writer in idle:
            writer.close()


def test_the_limit_keeps_a_reserve_below_the_descriptor_limit() -> None:
    assert connection_limit(256, None) == 256
    assert connection_limit(256, 4096) == 256
    assert connection_limit(256, 300) == 300 - RESERVED_FDS
    assert connection_limit(256, 100) == connections.MIN_CONNECTIONS
