"""One authenticated WebSocket connection to Home Assistant: commands with ids and their results, event
subscriptions, the read loop, the auth handshake (each step bounded by ``handshake_timeout_s``).

The source (source.py) reconnects around it; one-shot commands (``homeiq import-history``) use
``open_connection``. The backfill, the feeds and the registry sync take a connection from here, so none of
them imports the source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from homeiq_daemon import __version__
from homeiq_daemon.config import HomeAssistantSettings
from homeiq_daemon.errors import AuthError, ProtocolError
from homeiq_daemon.model import StateChange
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant import messages as hamessages
from homeiq_daemon.sources.homeassistant.readpacing import ReadPacer, pausable_transport

log = get_logger("homeiq.ha")

EventHandler = Callable[[dict[str, Any]], None]
ChangeHandler = Callable[[StateChange], None]
ConnectHook = Callable[["HAConnection"], Awaitable[None]]


class ConnectionLost(Exception):  # the connection ended; we reconnect
    pass


class CommandFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class HAConnection:
    """One authenticated connection: commands with ids, results matched to their futures, subscriptions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stats: Stats) -> None:
        self._ws = ws
        self._stats = stats
        self._ids = hamessages.CommandIds()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, EventHandler] = {}
        # state_changed subscriptions that take their events decoded by the typed fast path
        self._change_handlers: dict[int, ChangeHandler] = {}
        self._changes = hamessages.StateChangedDecoder()
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._malformed_logged = 0
        self._pacer: ReadPacer | None = None

    def pace_reads(self, interval_s: float) -> bool:
        """From now on read in bursts at most ``interval_s`` apart while no answer is awaited (readpacing.py);
        False where the connection offers no read flow control (then it is read frame by frame)."""
        transport = pausable_transport(self._ws) if interval_s > 0 else None
        if transport is None:
            return False
        self._pacer = ReadPacer(transport, interval_s)
        return True

    def _awaiting_answer(self) -> bool:
        return any(not f.done() for f in self._pending.values()) or any(not f.done() for f in self._pongs.values())

    def _expect_answer(self) -> None:
        if self._pacer is not None:
            self._pacer.wake()

    async def call(self, msg_type: str, timeout_s: float = 60.0, **payload: Any) -> Any:
        msg_id = self._ids.take()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._expect_answer()
        try:
            async with asyncio.timeout(timeout_s):  # the send too: a peer that stops reading blocks it
                await self._ws.send_str(hamessages.command(msg_id, msg_type, **payload))
                return await future
        finally:
            self._pending.pop(msg_id, None)

    async def subscribe(self, event_type: str, handler: EventHandler, *, command: str | None = None,
                        on_change: ChangeHandler | None = None) -> int:
        """Subscribe; ``handler`` gets each event. With ``on_change`` (state_changed only), the events of frames
        the typed decoder accepts go there as StateChanges instead, and only the others to ``handler``."""
        msg_id = self._ids.take()
        text = hamessages.command(msg_id, command) if command else hamessages.subscribe_events(msg_id, event_type)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._subscriptions[msg_id] = handler  # register first: events may follow the result at once
        if on_change is not None:
            self._change_handlers[msg_id] = on_change
        self._expect_answer()
        try:
            async with asyncio.timeout(30.0):
                await self._ws.send_str(text)
                await future
        except BaseException:
            self._subscriptions.pop(msg_id, None)
            self._change_handlers.pop(msg_id, None)
            raise
        finally:
            self._pending.pop(msg_id, None)
        return msg_id

    async def ping(self, timeout_s: float) -> None:
        msg_id = self._ids.take()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[msg_id] = future
        self._expect_answer()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ws.send_str(hamessages.command(msg_id, "ping"))
                await future
        except TimeoutError:
            raise ConnectionLost(f"no pong within {timeout_s:g} s") from None
        finally:
            self._pongs.pop(msg_id, None)

    async def read_loop(self) -> None:
        """Dispatch frames until the socket closes; then fail every waiter."""
        try:
            async for frame in self._ws:
                if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    if not (self._change_handlers and self._dispatch_changes(frame.data)):
                        try:
                            messages = hamessages.decode_frame(frame.data)
                        except ProtocolError as exc:
                            self._malformed(str(exc))
                            continue
                        for message in messages:
                            self._dispatch(message)
                    if self._pacer is not None:
                        self._pacer.after_frame(self._awaiting_answer())
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    raise ConnectionLost(f"websocket error: {self._ws.exception()}")
                else:
                    break
        finally:
            if self._pacer is not None:
                self._pacer.close()
            lost = ConnectionLost("connection closed")
            for future in [*self._pending.values(), *self._pongs.values()]:
                if not future.done():
                    future.set_exception(lost)
        raise ConnectionLost(f"connection closed by peer (code {self._ws.close_code})")

    def _dispatch_changes(self, data: str | bytes) -> bool:
        """Hand a frame of state_changed events to its subscriptions by the typed fast path; False (nothing
        handed) when the frame is anything else, which then takes the general path."""
        changes = self._changes.decode(data)
        if changes is None:
            return False
        handlers = self._change_handlers
        if not all(msg_id in handlers for msg_id, _ in changes):
            return False
        for msg_id, change in changes:
            try:
                handlers[msg_id](change)
            except Exception as exc:  # as in _dispatch: never stop the reader
                if self._malformed_logged < 10:
                    log.exception("ha.event_handler_failed", subscription=msg_id)
                self._malformed(f"event handler failed: {type(exc).__name__}")
        return True

    def _dispatch(self, message: dict[str, Any]) -> None:
        msg_type = message.get("type")
        msg_id = message.get("id")
        if msg_type == "event":
            handler = self._subscriptions.get(msg_id) if isinstance(msg_id, int) else None
            event = message.get("event")
            if handler is None or not isinstance(event, dict):
                self._malformed(f"event for unknown subscription {msg_id!r}")
                return
            try:
                handler(event)
            except Exception as exc:  # one odd event (or a handler bug) must never stop the reader
                if self._malformed_logged < 10:
                    log.exception("ha.event_handler_failed", subscription=msg_id)
                self._malformed(f"event handler failed: {type(exc).__name__}")
        elif msg_type == "result":
            future = self._pending.get(msg_id) if isinstance(msg_id, int) else None
            if future is None or future.done():
                return  # a result for a command we gave up on
            if message.get("success") is True:
                future.set_result(message.get("result"))
            else:
                code, text = hamessages.result_error(message)
                future.set_exception(CommandFailed(code, text))
        elif msg_type == "pong":
            pong = self._pongs.get(msg_id) if isinstance(msg_id, int) else None
            if pong is not None and not pong.done():
                pong.set_result(None)
        else:
            self._malformed(f"unexpected message type {str(msg_type)[:40]!r}")

    def _malformed(self, reason: str) -> None:
        self._stats.malformed_messages["home_assistant"] += 1
        self._malformed_logged = n = self._malformed_logged + 1
        if n <= 10 or n % 1000 == 0:
            log.warning("ha.message_skipped", reason=reason[:200], count=n)


async def _receive_json(ws: aiohttp.ClientWebSocketResponse, timeout_s: float, expected: str) -> dict[str, Any]:
    try:
        frame = await ws.receive(timeout=timeout_s)
    except TimeoutError:
        raise ConnectionLost(f"no {expected} within {timeout_s:g} s") from None
    if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        raise ConnectionLost(f"connection closed during handshake ({frame.type.name})")
    messages = hamessages.decode_frame(frame.data)
    if len(messages) != 1:
        raise ProtocolError(f"expected one {expected} message, got a frame of {len(messages)}")
    return messages[0]


async def authenticate(ws: aiohttp.ClientWebSocketResponse, s: HomeAssistantSettings, url: str) -> None:
    """``auth_required`` -> ``auth`` -> ``auth_ok``; AuthError (never retried) on ``auth_invalid``."""
    assert s.token is not None
    first = await _receive_json(ws, s.handshake_timeout_s, "auth_required")
    if first.get("type") != "auth_required":
        raise ProtocolError(f"expected auth_required, got {str(first.get('type'))[:40]!r}")
    await ws.send_str(hamessages.auth(s.token.get_secret_value()))
    reply = await _receive_json(ws, s.handshake_timeout_s, "auth_ok")
    if reply.get("type") == "auth_invalid":
        reason = reply.get("message", "auth_invalid")
        raise AuthError(
            f"Home Assistant at {url} rejected the access token ({reason}). "
            "Create a new long-lived access token in your HA profile and set home_assistant.token; "
            "not retrying, because HA bans addresses after repeated failed logins."
        )
    if reply.get("type") != "auth_ok":
        raise ProtocolError(f"expected auth_ok, got {str(reply.get('type'))[:40]!r}")
    log.debug("ha.authenticated", ha_version=reply.get("ha_version"))


@contextlib.asynccontextmanager
async def open_connection(s: HomeAssistantSettings, stats: Stats) -> AsyncIterator[HAConnection]:
    """One authenticated connection with its reader running, for one-shot commands (import-history)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": f"homeiq-daemon/{__version__}"}) as session,
        session.ws_connect(s.websocket_url, max_msg_size=s.max_message_bytes, ssl=s.verify_ssl) as ws,
    ):
        async with asyncio.timeout(s.handshake_timeout_s * 2):
            await authenticate(ws, s, redact_url(s.websocket_url))
        conn = HAConnection(ws, stats)
        reader = asyncio.create_task(conn.read_loop(), name="homeiq-ha-reader")
        try:
            with contextlib.suppress(CommandFailed):
                await conn.call("supported_features", features={"coalesce_messages": 1}, timeout_s=10.0)
            yield conn
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                await reader
