"""Bounds on the HTTP server's connections, so idle or slow clients cannot take the daemon's descriptors.

* At most ``limit`` client connections are open. A new one beyond it displaces another: first the oldest
  that has sent nothing at all for ``SILENT_GRACE_S`` (an HTTP client sends its request as soon as it is
  connected), else the longest-idle keep-alive connection (no request being answered, no bytes for
  ``EVICTABLE_AFTER_S``). When none qualifies, the new connection is closed at once. Idle sockets therefore
  cannot hold the slots against real requests, which send their bytes at once. (A client that reconnects
  in a tight loop is a connection flood: see docs/api.md, "Limits", for a firewall rule.)
* ``limit`` stays below the process's descriptor limit minus ``RESERVED_FDS`` (the stores, their WAL files,
  spool segments, InfluxDB and Home Assistant connections, the journal): accepting clients never makes
  a write to InfluxDB or the spool fail with EMFILE.
* Idle and slow-header connections are closed by aiohttp's keep-alive timer (``http.idle_timeout_s``), which
  runs from the moment a connection opens until a complete request arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

RESERVED_FDS = 128
MIN_CONNECTIONS = 8
EVICTABLE_AFTER_S = 1.0
SILENT_GRACE_S = 0.1


def descriptor_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None when unlimited or unknown."""
    with contextlib.suppress(OSError, ValueError):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            return int(soft)
    return None


def connection_limit(configured: int, fd_limit: int | None) -> int:
    """``configured``, lowered to keep ``RESERVED_FDS`` descriptors free for everything but HTTP clients."""
    if fd_limit is None:
        return configured
    return max(MIN_CONNECTIONS, min(configured, fd_limit - RESERVED_FDS))


@dataclass(slots=True)
class ConnectionStats:
    open: int = 0
    accepted: int = 0
    evicted: int = 0
    refused: int = 0


class ConnectionGuard:
    """A protocol factory around aiohttp's: ``loop.create_server(guard, …)``."""

    def __init__(
        self, factory: Callable[[], asyncio.Protocol], limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._factory = factory
        self.limit = limit
        self._clock = clock
        self._open: dict[_GuardedProtocol, None] = {}  # oldest first
        self.stats = ConnectionStats()

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self, self._factory)

    def admit(self, protocol: _GuardedProtocol) -> bool:
        if len(self._open) >= self.limit and not self._evict_one():
            self.stats.refused += 1
            return False
        self._open[protocol] = None
        self.stats.accepted += 1
        self.stats.open = len(self._open)
        return True

    def release(self, protocol: _GuardedProtocol) -> None:
        if self._open.pop(protocol, False) is None:
            self.stats.open = len(self._open)

    def _evict_one(self) -> bool:
        now = self._clock()
        victim = next((p for p in self._open if p.silent and now - p.opened_at >= SILENT_GRACE_S), None)
        if victim is None:  # no silent one: the longest-idle keep-alive connection
            quiet = [p for p in self._open if not p.busy and now - p.last_activity >= EVICTABLE_AFTER_S]
            if not quiet:
                return False
            victim = min(quiet, key=lambda p: p.last_activity)
        self.release(victim)
        victim.abort()
        self.stats.evicted += 1
        return True

    def collect(self) -> Iterator[Any]:
        st = self.stats
        yield GaugeMetricFamily("homeiq_http_connections_open", "Open HTTP client connections.", value=st.open)
        yield GaugeMetricFamily("homeiq_http_connections_limit", "Most HTTP client connections open at once.",
                                value=self.limit)  # fmt: skip
        family = CounterMetricFamily("homeiq_http_connections_handled", "HTTP client connections, by outcome.",
                                     labels=["outcome"])  # fmt: skip
        for outcome in ("accepted", "evicted", "refused"):
            family.add_metric([outcome], getattr(st, outcome))
        yield family


class _GuardedProtocol(asyncio.Protocol):
    """Forwards every call to aiohttp's protocol; notes when the client last sent bytes."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: asyncio.Protocol | None = None  # aiohttp's, made only for an admitted connection
        self._transport: asyncio.BaseTransport | None = None
        self.opened_at = self.last_activity = guard._clock()
        self.silent = True  # no byte from the client yet

    @property
    def busy(self) -> bool:
        """A request is being answered (aiohttp's flag; absent in another version: treat as idle)."""
        return self._inner is not None and bool(getattr(self._inner, "_request_in_progress", False))

    def abort(self) -> None:
        if self._transport is not None:
            transport = self._transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            else:
                transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._guard.admit(self):
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()  # no HTTP answer: writing one could block on a client that does not read
            else:
                transport.close()
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.release(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._guard._clock()
        self.silent = False
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
