"""Home Assistant WebSocket API messages: parse what HA sends, build what we send. Pure code, no sockets.

Reference: https://developers.home-assistant.io/docs/api/websocket/ . HA may pack several messages into
one frame as a JSON array once the ``coalesce_messages`` feature is on; ``decode_frame`` handles both.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import EntityState, Origin, StateChange, TimestampOutOfRange, iso_to_ns

Message = dict[str, Any]

# Entity ids are "domain.object_id"; HA itself allows [a-z0-9_] only, we accept any non-empty parts so
# that a future HA or a custom integration cannot make us drop data, but we bound the length.
MAX_ENTITY_ID_LEN = 255
# Per entity, the raw attributes of its last state are kept (to skip decoding them again) up to this size.
_ATTRIBUTES_MEMO_MAX_BYTES = 4096
_ATTRIBUTES_MEMO_ENTITIES = 8192


def decode_frame(data: str | bytes) -> list[Message]:
    """Decode one WebSocket text frame into its messages. Raises ProtocolError when malformed."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        if not all(isinstance(item, dict) for item in decoded):
            raise ProtocolError("coalesced frame holds a non-object")
        return decoded
    raise ProtocolError(f"frame is a JSON {type(decoded).__name__}, not an object")


def parse_state(obj: object) -> EntityState:
    """Validate one HA state object (as in ``get_states`` results and ``state_changed`` events)."""
    if not isinstance(obj, dict):
        raise ProtocolError("state is not an object")
    entity_id = obj.get("entity_id")
    state = obj.get("state")
    attributes = obj.get("attributes", {})
    last_updated = obj.get("last_updated")
    last_changed = obj.get("last_changed", last_updated)
    if not isinstance(entity_id, str):
        raise ProtocolError(f"bad entity_id {str(entity_id)[:80]!r}")
    _check_entity_id(entity_id)
    if not isinstance(state, str):
        raise ProtocolError(f"{entity_id}: state is not a string")
    if not isinstance(attributes, dict):
        raise ProtocolError(f"{entity_id}: attributes is not an object")
    if not isinstance(last_updated, str):
        raise ProtocolError(f"{entity_id}: last_updated missing")
    return _timed_state(entity_id, state, attributes, last_updated, last_changed)


def _check_entity_id(entity_id: str) -> None:
    if not 2 < len(entity_id) <= MAX_ENTITY_ID_LEN:
        raise ProtocolError(f"bad entity_id {entity_id[:80]!r}")
    domain, dot, object_id = entity_id.partition(".")
    if not dot or not domain or not object_id:
        raise ProtocolError(f"entity_id {entity_id[:80]!r} is not domain.object_id")


def _timed_state(entity_id: str, state: str, attributes: dict[str, Any], last_updated: str,
                 last_changed: object) -> EntityState:
    """The state, with last_updated parsed (ProtocolError when it is no storable ISO 8601 time)."""
    try:
        last_updated_ns = iso_to_ns(last_updated)
    except TimestampOutOfRange as exc:
        raise ProtocolError(f"{entity_id}: last_updated {exc}") from None
    except ValueError:
        raise ProtocolError(f"{entity_id}: last_updated {last_updated[:40]!r} is not ISO 8601") from None
    if not isinstance(last_changed, str) or last_changed == last_updated:
        last_changed = last_updated  # one text for both (held per entity for as long as it is the latest)
    return EntityState(entity_id, state, attributes, last_changed, last_updated, last_updated_ns)


def parse_state_changed(data: object, origin: Origin = "live") -> StateChange:
    """The ``data`` of a ``state_changed`` event -> StateChange."""
    if not isinstance(data, dict):
        raise ProtocolError("state_changed data is not an object")
    entity_id = data.get("entity_id")
    new_raw = data.get("new_state")
    new_state = parse_state(new_raw) if new_raw is not None else None
    # ``old_state`` is not parsed: the pipeline knows the last state it saw of every entity (which is also
    # right after a reconnect, when HA's old_state may be one we never saw), and parsing it would double
    # the cost of every event.
    if not isinstance(entity_id, str):
        if new_state is None:
            raise ProtocolError("state_changed without entity_id")
        entity_id = new_state.entity_id
    return StateChange(entity_id, new_state, None, origin)


# --- the typed fast path for state_changed events --------------------------------------------------------
# Almost every frame a running daemon reads is a state_changed event (or a coalesced array of them). Decoded into
# these types, only what the daemon reads is built: old_state, contexts and time_fired are checked as JSON and
# skipped, and the attributes are kept as raw JSON until they differ from the entity's previous ones.


class _NewState(msgspec.Struct):
    entity_id: str
    state: str
    last_updated: str
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    last_changed: str | None = None


class _Data(msgspec.Struct):
    entity_id: str | None = None
    new_state: _NewState | None = None


class _Event(msgspec.Struct):
    event_type: str
    data: _Data


class _EventMessage(msgspec.Struct):
    id: int
    type: str  # a plain field, not a tag: a single tagged type would also accept a message without it
    event: _Event


_EVENT_FRAME = msgspec.json.Decoder(_EventMessage | list[_EventMessage])


class StateChangedDecoder:
    """Decodes frames of ``state_changed`` events straight to StateChanges, with the same result as
    ``decode_frame`` + ``parse_state_changed`` but about a third of the work.

    ``decode`` answers None for any frame it does not fully accept (other messages, other events, anything
    malformed or unusual): those take the general path, which gives them their precise error. Consecutive
    states of an entity with byte-identical attributes share one attributes dict (which nobody mutates), so
    the mapper's per-entity memo recognises them by identity.
    """

    __slots__ = ("_attributes",)

    def __init__(self) -> None:
        self._attributes: dict[str, tuple[msgspec.Raw, dict[str, Any]]] = {}

    def decode(self, data: str | bytes, origin: Origin = "live") -> list[tuple[int, StateChange]] | None:
        """[(subscription id, change)] of a frame holding only well-formed state_changed events, else None."""
        try:
            decoded = _EVENT_FRAME.decode(data)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            return None
        changes = []
        for message in decoded if isinstance(decoded, list) else (decoded,):
            event = message.event
            if message.type != "event" or event.event_type != "state_changed":
                return None
            entity_id = event.data.entity_id
            raw = event.data.new_state
            if raw is None:
                if entity_id is None:
                    return None
                changes.append((message.id, StateChange(entity_id, None, None, origin)))
                continue
            state = self._state(raw)
            if state is None:
                return None
            if entity_id is None:
                entity_id = state.entity_id
            changes.append((message.id, StateChange(entity_id, state, None, origin)))
        return changes

    def _state(self, raw: _NewState) -> EntityState | None:
        entity_id = raw.entity_id
        raw_attributes = raw.attributes
        memo = self._attributes.get(entity_id)
        try:
            _check_entity_id(entity_id)
            if memo is not None and memo[0] == raw_attributes:
                attributes = memo[1]
            else:
                attributes = self._decode_attributes(entity_id, raw_attributes, memo is not None)
            return _timed_state(entity_id, raw.state, attributes, raw.last_updated, raw.last_changed)
        except ProtocolError:
            return None

    def _decode_attributes(self, entity_id: str, raw: msgspec.Raw, remembered: bool) -> dict[str, Any]:
        view = memoryview(raw)
        try:
            attributes = orjson.loads(view)
        except orjson.JSONDecodeError:
            raise ProtocolError("attributes are not JSON") from None
        if not isinstance(attributes, dict):
            raise ProtocolError("attributes is not an object")
        if len(view) <= _ATTRIBUTES_MEMO_MAX_BYTES:
            if not remembered and len(self._attributes) >= _ATTRIBUTES_MEMO_ENTITIES:
                self._attributes.clear()
            # a copy: the Raw itself would keep the whole frame alive
            self._attributes[entity_id] = (raw.copy(), attributes)
        elif remembered:
            del self._attributes[entity_id]
        return attributes


def result_error(message: Message) -> tuple[str, str]:
    """(code, message) of a failed ``result``, whatever shape its ``error`` has (HA sends an object)."""
    error = message.get("error")
    if isinstance(error, dict):
        return str(error.get("code"))[:100], str(error.get("message"))[:300]
    return "unknown_error", str(error)[:300]


class CommandIds:
    """Message ids for one connection: strictly increasing, starting at 1 (HA closes on a reused id)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 1

    def take(self) -> int:
        value = self._next
        self._next += 1
        return value


# HA closes the connection on binary frames: everything we send is a text frame.


def auth(token: str) -> str:
    return orjson.dumps({"type": "auth", "access_token": token}).decode()


def command(msg_id: int, msg_type: str, **payload: Any) -> str:
    return orjson.dumps({"id": msg_id, "type": msg_type, **payload}).decode()


def supported_features(msg_id: int) -> str:
    return command(msg_id, "supported_features", features={"coalesce_messages": 1})


def subscribe_events(msg_id: int, event_type: str) -> str:
    return command(msg_id, "subscribe_events", event_type=event_type)


def state_changed_data(message: Message) -> object | None:
    """The ``data`` of a state_changed event in any of the forms a recording may hold: a WebSocket
    ``event`` message, a bare event (``event_type`` + ``data``), or the data object itself."""
    if message.get("type") == "event" and isinstance(message.get("event"), dict):
        message = message["event"]
    if "event_type" in message:
        return message.get("data") if message.get("event_type") == "state_changed" else None
    if "new_state" in message or "entity_id" in message:
        return message
    return None
