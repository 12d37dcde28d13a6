"""A protocol-exact fake of Home Assistant's WebSocket API, for fault injection on loopback.

It speaks the messages of HA 2024.3 byte-compatible in shape (``auth_required`` → ``auth`` →
``auth_ok``/``auth_invalid``; ``result``/``event``/``pong``; coalesced JSON arrays once the client enabled
``coalesce_messages``), and lets a test do what the real HA cannot be made to do on demand: drop every
connection, stop answering pings, send malformed frames, reject the token, change states while the
client is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web

HA_VERSION = "2024.3.3"
MATCH_ALL = "*"  # homeassistant.const.MATCH_ALL: what subscribe_events without event_type listens to


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def make_state(entity_id: str, state: str, attributes: dict[str, Any] | None = None,
               last_updated: str | None = None, last_changed: str | None = None) -> dict[str, Any]:
    stamp = last_updated or now_iso()
    return {"entity_id": entity_id, "state": state, "attributes": attributes or {},
            "last_changed": last_changed or stamp, "last_reported": stamp, "last_updated": stamp,
            "context": {"id": "01HFAKE000000000000000000", "parent_id": None, "user_id": None}}


ENTITIES_SUBSCRIPTION = "<subscribe_entities>"


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def compressed_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state as ``subscribe_entities`` sends it (HA 2024.3): lu only when it differs from lc."""
    context = state.get("context") or {}
    plain = not context.get("parent_id") and not context.get("user_id")
    out: dict[str, Any] = {"s": state["state"], "a": state["attributes"],
                           "c": context.get("id") if plain else context, "lc": _timestamp(state["last_changed"])}
    if state["last_updated"] != state["last_changed"]:
        out["lu"] = _timestamp(state["last_updated"])
    return out


def entity_diff_event(data: dict[str, Any]) -> dict[str, Any]:
    """A state_changed event's data as a ``subscribe_entities`` event: an add, a removal or a diff."""
    new, old = data.get("new_state"), data.get("old_state")
    if new is None:
        return {"r": [data["entity_id"]]}
    if old is None:
        return {"a": {new["entity_id"]: compressed_state(new)}}
    plus: dict[str, Any] = {}
    if old["state"] != new["state"]:
        plus["s"] = new["state"]
    if old["last_changed"] != new["last_changed"]:
        plus["lc"] = _timestamp(new["last_changed"])
    elif old["last_updated"] != new["last_updated"]:
        plus["lu"] = _timestamp(new["last_updated"])
    if (old.get("context") or {}).get("id") != (new.get("context") or {}).get("id"):
        plus["c"] = new["context"]["id"]
    diff: dict[str, Any] = {"+": plus}
    old_attrs, new_attrs = old["attributes"], new["attributes"]
    if old_attrs != new_attrs:
        changed = {k: v for k, v in new_attrs.items() if old_attrs.get(k) != v}
        if changed:
            plus["a"] = changed
        removed = [k for k in old_attrs if k not in new_attrs]
        if removed:
            diff["-"] = {"a": removed}
    return {"c": {new["entity_id"]: diff}}


@dataclass
class ClientConn:
    ws: web.WebSocketResponse
    subscriptions: dict[int, str] = field(default_factory=dict)  # id -> event_type
    coalesce: bool = False
    last_id: int = 0
    ids: list[int] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)


class FakeHomeAssistant:
    def __init__(self, token: str = "good-token") -> None:
        self.token = token
        self.states: dict[str, dict[str, Any]] = {}
        self.registries: dict[str, list[dict[str, Any]]] = {
            "config/area_registry/list": [],
            "config/device_registry/list": [],
            "config/entity_registry/list": [],
        }
        self.clients: list[ClientConn] = []
        self.auth_attempts = 0
        self.connections = 0
        self.answer_pings = True
        self.protocol_violations: list[str] = []
        self.commands: list[dict[str, Any]] = []
        # Fault injection: a raw frame sent instead of ``auth_ok`` (then the connection closes), and raw
        # ``result`` bodies per command type (merged over the id), e.g. {"success": False, "error": "boom"}.
        self.auth_reply_raw: str | None = None
        self.result_overrides: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.connected = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/api/websocket", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- test controls --------------------------------------------------------------------------

    def set_state(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None,
                  last_updated: str | None = None, *, notify: bool = True) -> dict[str, Any]:
        old = self.states.get(entity_id)
        new = make_state(entity_id, state, attributes, last_updated)
        self.states[entity_id] = new
        if notify:
            self.fire("state_changed", {"entity_id": entity_id, "old_state": old, "new_state": new})
        return new

    def fire(self, event_type: str, data: dict[str, Any]) -> None:
        event = {"event_type": event_type, "data": data, "origin": "LOCAL", "time_fired": now_iso(),
                 "context": {"id": "01HFAKE000000000000000001", "parent_id": None, "user_id": None}}
        diff: dict[str, Any] | None = None
        for client in list(self.clients):
            for sub_id, sub_type in client.subscriptions.items():
                if sub_type in (event_type, MATCH_ALL):  # no event_type subscribes to every event, as in HA
                    self._queue(client, {"id": sub_id, "type": "event", "event": event})
                elif sub_type == ENTITIES_SUBSCRIPTION and event_type == "state_changed":
                    diff = diff or entity_diff_event(data)
                    self._queue(client, {"id": sub_id, "type": "event", "event": diff})

    async def flush(self) -> None:
        """Send what is queued (events are queued so several can be coalesced into one frame)."""
        for client in list(self.clients):
            await self._send_queue(client)

    async def drop_connections(self) -> None:
        """Abort every connection without a close handshake (like a crashed HA or a pulled cable)."""
        for client in list(self.clients):
            transport = client.ws._req.transport if client.ws._req is not None else None
            if transport is not None:
                transport.abort()
            with contextlib.suppress(OSError, RuntimeError):  # the transport is gone: closing it may fail so
                await client.ws.close()
        self.clients.clear()
        self.connected.clear()

    async def send_raw(self, data: str | bytes) -> None:
        for client in list(self.clients):
            if isinstance(data, bytes):
                await client.ws.send_bytes(data)
            else:
                await client.ws.send_str(data)

    # --- protocol -------------------------------------------------------------------------------

    def _queue(self, client: ClientConn, message: dict[str, Any]) -> None:
        client.queue.append(message)
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._send_queue(client)))

    async def _send_queue(self, client: ClientConn) -> None:
        if not client.queue or client.ws.closed:
            client.queue.clear()
            return
        messages, client.queue = client.queue, []
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            if client.coalesce and len(messages) > 1:
                await client.ws.send_str(orjson.dumps(messages).decode())
            else:
                for message in messages:
                    await client.ws.send_str(orjson.dumps(message).decode())

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str(orjson.dumps({"type": "auth_required", "ha_version": HA_VERSION}).decode())
        first = await ws.receive()
        if first.type != WSMsgType.TEXT:
            self.protocol_violations.append(f"first frame not text: {first.type}")
            await ws.close()
            return ws
        auth = orjson.loads(first.data)
        self.auth_attempts += 1
        if auth.get("type") != "auth" or auth.get("access_token") != self.token:
            await ws.send_str(orjson.dumps({"type": "auth_invalid",
                                            "message": "Invalid access token or password"}).decode())
            await ws.close()
            return ws
        if self.auth_reply_raw is not None:
            await ws.send_str(self.auth_reply_raw)
            await ws.close()
            return ws
        await ws.send_str(orjson.dumps({"type": "auth_ok", "ha_version": HA_VERSION}).decode())
        client = ClientConn(ws)
        self.clients.append(client)
        self.connected.set()
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    self.protocol_violations.append(f"non-text frame {frame.type}")  # HA disconnects here
                    break
                await self._command(client, orjson.loads(frame.data))
        finally:
            if client in self.clients:
                self.clients.remove(client)
        return ws

    async def _command(self, client: ClientConn, msg: dict[str, Any]) -> None:
        self.commands.append(msg)
        msg_id = msg.get("id")
        if not isinstance(msg_id, int) or msg_id <= client.last_id:
            self.protocol_violations.append(f"id {msg_id!r} not increasing after {client.last_id}")
            self._queue(client, {"id": msg_id, "type": "result", "success": False,
                                 "error": {"code": "id_reuse", "message": "Identifier values have to increase."}})
            return
        client.last_id = msg_id
        client.ids.append(msg_id)
        kind = msg.get("type")
        if kind in self.result_overrides:
            self._queue(client, {"id": msg_id, "type": "result", **self.result_overrides[kind]})
        elif kind == "ping":
            if self.answer_pings:
                self._queue(client, {"id": msg_id, "type": "pong"})
        elif kind == "supported_features":
            client.coalesce = bool(msg.get("features", {}).get("coalesce_messages"))
            self._queue(client, {"id": msg_id, "type": "result", "success": True, "result": None})
        elif kind == "subscribe_events":
            client.subscriptions[msg_id] = msg.get("event_type", MATCH_ALL)
            self._queue(client, {"id": msg_id, "type": "result", "success": True, "result": None})
        elif kind == "subscribe_entities":
            client.subscriptions[msg_id] = ENTITIES_SUBSCRIPTION
            self._queue(client, {"id": msg_id, "type": "result", "success": True, "result": None})
            self._queue(client, {"id": msg_id, "type": "event",
                                 "event": {"a": {eid: compressed_state(st) for eid, st in self.states.items()}}})
        elif kind == "get_states":
            self._queue(client, {"id": msg_id, "type": "result", "success": True,
                                 "result": list(self.states.values())})
        elif kind in self.registries:
            self._queue(client, {"id": msg_id, "type": "result", "success": True, "result": self.registries[kind]})
        else:
            self._queue(client, {"id": msg_id, "type": "result", "success": False,
                                 "error": {"code": "unknown_command", "message": "Unknown command."}})
