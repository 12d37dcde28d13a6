"""Home Assistant source: the only module that talks to HA's WebSocket API.

One connection at a time: connect -> ``auth_required`` -> ``auth`` -> ``auth_ok`` -> ask for coalesced
frames -> the feed's subscription and snapshot (``feeds.py``; it fills the gap since the last connection)
-> connect hooks (the metadata sync) -> read until the connection dies.

* The reader never waits on a sink: ``Pipeline.submit`` is synchronous, so HA never sees a slow consumer.
* Heartbeat: a ``ping`` every ``heartbeat_interval_s``; no ``pong`` within ``heartbeat_timeout_s`` and the
  connection is declared dead (so a dead peer is noticed within 30 s with the defaults).
* Reconnect with exponential backoff and jitter, capped at ``reconnect_max_s``; reset after a connection
  that stayed up for a minute. The first failure logs a warning, repeats log at debug.
* ``auth_invalid`` raises AuthError: HA bans IPs after repeated failed logins, so a rejected token is never
  retried.
* Malformed or unexpected messages are logged (rate-limited), counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp

from homeiq_daemon import __version__
from homeiq_daemon.config import HomeAssistantSettings
from homeiq_daemon.errors import AuthError, ProtocolError
from homeiq_daemon.model import EntityState, Origin
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.memory import release_free_memory
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant.backfill import Backfill
from homeiq_daemon.sources.homeassistant.connection import (
    CommandFailed,
    ConnectHook,
    ConnectionLost,
    EventHandler,
    HAConnection,
    authenticate,
)
from homeiq_daemon.sources.homeassistant.feeds import make_feed

log = get_logger("homeiq.ha")

STABLE_AFTER_S = 60.0


class HomeAssistantSource:
    def __init__(self, settings: HomeAssistantSettings, pipeline: Pipeline, stats: Stats) -> None:
        assert settings.url is not None
        assert settings.token is not None
        self._settings = settings
        self._pipeline = pipeline
        self._stats = stats
        self._connect_hooks: list[ConnectHook] = []
        self._event_handlers: dict[str, EventHandler] = {}
        self.connected = asyncio.Event()
        self.first_connection = asyncio.Event()
        self.url = settings.websocket_url
        self.shown_url = redact_url(self.url)  # for logs and errors: no user:password@, no query
        self._malformed_events = 0
        watermarks = pipeline.watermarks
        self.backfill = (
            Backfill(settings.backfill, pipeline, watermarks, stats)
            if watermarks is not None and settings.backfill.enabled
            else None
        )
        self._backfill_task: asyncio.Task[None] | None = None
        self._last_connected_at: float | None = None  # monotonic end of the last good connection

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """Called after every (re)connect and snapshot, with the live connection (e.g. registry sync)."""
        self._connect_hooks.append(hook)

    def add_event_handler(self, event_type: str, handler: EventHandler) -> None:
        """Subscribe to another HA event type on every connection."""
        self._event_handlers[event_type] = handler

    async def run(self) -> None:
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._settings.connect_timeout_s)
        connector = aiohttp.TCPConnector(ssl=self._settings.verify_ssl, limit=2)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers={"User-Agent": f"homeiq-daemon/{__version__}"}
        ) as session:
            while True:
                started = time.monotonic()
                try:
                    await self._connect_and_serve(session)
                except AuthError:
                    raise
                except (
                    ConnectionLost,
                    aiohttp.ClientError,
                    OSError,
                    TimeoutError,
                    ProtocolError,
                    CommandFailed,
                ) as exc:
                    error = str(exc) or type(exc).__name__
                finally:
                    self._set_disconnected()
                if time.monotonic() - started > STABLE_AFTER_S:
                    attempt = 0
                attempt += 1
                self._stats.reconnects += 1
                delay = backoff_delay(attempt, self._settings.reconnect_initial_s, self._reconnect_cap_s())
                # The first failure warns; repeats stay quiet, but a long outage still shows every 20th attempt.
                logger = log.warning if attempt == 1 else log.info if attempt % 20 == 0 else log.debug
                logger("ha.disconnected", url=self.shown_url, error=error[:300], retry_in_s=round(delay, 1),
                       attempt=attempt)  # fmt: skip
                await asyncio.sleep(delay)

    def _reconnect_cap_s(self) -> float:
        """A short cap while the last good connection ended recently (an HA restart or a blip is back in
        seconds and must be noticed within seconds), the long one for a host that stays away."""
        s = self._settings
        last = self._last_connected_at
        if last is not None and time.monotonic() - last < s.reconnect_recent_window_s:
            return min(s.reconnect_max_s, s.reconnect_recent_max_s)
        return s.reconnect_max_s

    def _set_disconnected(self) -> None:
        if self._stats.hub_connected:
            self._last_connected_at = time.monotonic()
        self.connected.clear()
        self._stats.hub_connected = False
        self._stats.hub_state = "disconnected"
        if self._stats.hub_down_since is None:
            self._stats.hub_down_since = time.time()

    async def _connect_and_serve(self, session: aiohttp.ClientSession) -> None:
        s = self._settings
        self._stats.hub_state = "connecting"
        try:  # TCP connect is bounded by connect_timeout_s; the upgrade answer after it by this
            async with asyncio.timeout(s.handshake_timeout_s):
                ws = await session.ws_connect(
                    self.url,
                    max_msg_size=s.max_message_bytes,
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                )
        except TimeoutError:
            raise ConnectionLost(f"no WebSocket upgrade answer within {s.handshake_timeout_s:g} s") from None
        async with ws:
            await self._authenticate(ws)
            conn = HAConnection(ws, self._stats)
            reader = asyncio.create_task(conn.read_loop(), name="homeiq-ha-reader")
            try:
                await self._setup(conn)
                await self._heartbeat(conn, reader)
            finally:
                if self._backfill_task is not None:
                    self._backfill_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._backfill_task
                    self._backfill_task = None
                    self._stats.backfill_running = False
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                    await reader

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._stats.hub_state = "authenticating"
        await authenticate(ws, self._settings, self.shown_url)

    async def _setup(self, conn: HAConnection) -> None:
        with contextlib.suppress(CommandFailed):
            await conn.call("supported_features", features={"coalesce_messages": 1}, timeout_s=10.0)
        origin: Origin = "snapshot" if not self.first_connection.is_set() else "gapfill"
        for event_type, handler in self._event_handlers.items():
            await conn.subscribe(event_type, handler)
        live_since = time.monotonic()
        feed = make_feed(self._settings.subscription, self._pipeline, self._event_skipped)
        states, emitted = await feed.open(conn, origin)
        for hook in self._connect_hooks:
            await hook(conn)
        release_free_memory()  # the snapshot's and the registries' decoded frames are garbage now
        conn.pace_reads(self._settings.read_pacing_s)
        self._stats.hub_connected = True
        self._stats.hub_state = "connected"
        self._stats.hub_down_since = None
        self.connected.set()
        if self.backfill is not None:
            self._backfill_task = asyncio.create_task(
                self._run_backfill(self.backfill, conn, states, live_since), name="homeiq-ha-backfill"
            )
        log.info(
            "ha.connected",
            url=self.shown_url,
            entities=len(states),
            **{"gap_filled" if origin == "gapfill" else "snapshot_points": emitted},
        )
        self.first_connection.set()

    async def _run_backfill(
        self, backfill: Backfill, conn: HAConnection, states: list[EntityState], live_since: float
    ) -> None:
        try:
            await backfill.run(conn.call, states, self._pipeline.accepts, live_since)
        except (ConnectionLost, TimeoutError, ProtocolError, CommandFailed) as exc:
            # The next connection starts it again from the same watermarks.
            log.info("backfill.interrupted", error=str(exc)[:200] or type(exc).__name__)
        except Exception:  # a bug here must not end the live stream
            log.exception("backfill.failed")

    async def _heartbeat(self, conn: HAConnection, reader: asyncio.Task[None]) -> None:
        s = self._settings
        while True:
            done, _ = await asyncio.wait({reader}, timeout=s.heartbeat_interval_s)
            if done:
                reader.result()  # raises ConnectionLost
                raise ConnectionLost("reader ended")
            await conn.ping(s.heartbeat_timeout_s)

    def _event_skipped(self, reason: str) -> None:
        self._stats.malformed_messages["home_assistant"] += 1
        self._malformed_events = n = self._malformed_events + 1
        if n <= 10 or n % 1000 == 0:
            log.warning("ha.event_skipped", reason=reason[:200], count=n)
