"""A webhook receiver on loopback that a test controls: scripted answers, delays, down/up on a fixed port.

It is a real aiohttp server speaking plain HTTP; every request is recorded with its exact body bytes,
headers and arrival time (``time.monotonic()``, comparable across processes on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from dataclasses import dataclass, field

import orjson
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    arrived: float
    status: int

    @property
    def json(self) -> dict[str, object]:
        return dict(orjson.loads(self.body))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    path: str = "/hook"
    answers: deque[tuple[int, dict[str, str], str]] = field(default_factory=deque)
    default_status: int = 200
    delay_s: float = 0.0
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _runner: web.AppRunner | None = None
    _arrival: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def answer(self, status: int, *, headers: dict[str, str] | None = None, body: str = "", times: int = 1) -> None:
        for _ in range(times):
            self.answers.append((status, headers or {}, body))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hang:
                await asyncio.sleep(3600)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status, headers, text = self.answers.popleft() if self.answers else (self.default_status, {}, "ok")
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body, arrived, status))
            self._arrival.set()
            return web.Response(status=status, headers=headers, text=text)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 10.0, *, delivered: bool = False) -> list[Received]:
        """Until ``count`` requests (or 2xx answers with ``delivered``) have arrived."""

        def seen() -> int:
            return sum(1 for r in self.received if not delivered or 200 <= r.status < 300)

        deadline = time.monotonic() + timeout
        while seen() < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"receiver got {seen()} of {count} requests in {timeout} s: {self.received}")
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), min(remaining, 0.5))
        return self.received

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]
