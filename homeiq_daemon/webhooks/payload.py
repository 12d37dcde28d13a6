"""The JSON body of a delivery and its id. Built once when a rule fires; the outbox stores these exact bytes
and every attempt signs and sends them unchanged."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from homeiq_daemon.model import EntityState, ns_to_iso
from homeiq_daemon.webhooks.rules import Match

PAYLOAD_TYPE = "homeiq.rule_matched"
TEST_PAYLOAD_TYPE = "homeiq.test"


def new_delivery_id(now_ns: int | None = None) -> str:
    """``msg_`` + 16 hex digits of time + 16 random: unique, roughly time-ordered, safe in a header."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"msg_{stamp:016x}{secrets.token_hex(8)}"


def _state(state: EntityState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "state": state.state,
        "attributes": state.attributes,
        "last_changed": state.last_changed,
        "last_updated": state.last_updated,
    }


def build_body(match: Match, delivery_id: str) -> bytes:
    change = match.change
    event = change.new_state or change.old_state
    event_time = event.last_updated if event is not None else ns_to_iso(match.received_ns)
    return orjson.dumps(
        {
            "type": PAYLOAD_TYPE,
            "delivery_id": delivery_id,
            "rule": match.rule,
            "entity_id": change.entity_id,
            "event_time": event_time,
            "fired_at": ns_to_iso(match.fired_ns),
            "origin": change.origin,
            "old_state": _state(change.old_state),
            "new_state": _state(change.new_state),
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def build_test_body(rule: str, entity_id: str, delivery_id: str, now_ns: int) -> bytes:
    when = ns_to_iso(now_ns)
    state = {"state": "test", "attributes": {}, "last_changed": when, "last_updated": when}
    return orjson.dumps(
        {
            "type": TEST_PAYLOAD_TYPE,
            "test": True,
            "delivery_id": delivery_id,
            "rule": rule,
            "entity_id": entity_id,
            "event_time": when,
            "fired_at": when,
            "origin": "test",
            "old_state": None,
            "new_state": state,
        }
    )
