"""Hostile webhook deliveries to the Home Assistant integration's verifier: each row is refused with the
documented reason, never an unhandled exception, and a genuine delivery signed with the same key still
verifies after it (a refusal changes nothing). Rows are listed in docs/bad-input.md."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from homeiq_daemon.webhooks import signing

ROOT = Path(__file__).resolve().parents[3]
SIGNATURE_PY = ROOT / "custom_components" / "homeiq_webhook" / "signature.py"
KEY = b"k" * 32
NOW = 1_700_000_000
BODY = b'{"rule":"door","entity_id":"binary_sensor.door","state":"on"}'


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("homeiq_webhook_signature_hostile", SIGNATURE_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ha = _load()
Headers = dict[str, str]


def _signed(body: bytes = BODY, timestamp: int = NOW, msg_id: str = "msg_1") -> Headers:
    return signing.sign_headers([KEY], msg_id, timestamp, body)


def _with(**changes: str) -> Callable[[], tuple[Headers, bytes]]:
    def build() -> tuple[Headers, bytes]:
        headers = _signed()
        for name, value in changes.items():
            headers[name.replace("_", "-")] = value
        return headers, BODY

    return build


def _without(name: str) -> Callable[[], tuple[Headers, bytes]]:
    def build() -> tuple[Headers, bytes]:
        headers = _signed()
        del headers[name]
        return headers, BODY

    return build


ROWS: list[tuple[str, Callable[[], tuple[Headers, bytes]], str]] = [
    ("delivery without a signature header", _without("webhook-signature"), "missing webhook-id"),
    ("delivery without an id header", _without("webhook-id"), "missing webhook-id"),
    ("delivery with a 400-digit timestamp", _with(webhook_timestamp="9" * 400), "not a number of seconds"),
    ("delivery with a 5,000-digit timestamp", _with(webhook_timestamp="1" * 5000), "not a number of seconds"),
    ("delivery with a negative timestamp", _with(webhook_timestamp="-1700000000"), "not a number of seconds"),
    ("delivery with non-ASCII digits in the timestamp", _with(webhook_timestamp="\u0661\u0667" + "\u0660" * 8),
     "not a number of seconds"),
    ("delivery stamped two hours ago", lambda: (_signed(timestamp=NOW - 7200), BODY), "too old or too far"),
    ("delivery with its body changed after signing", lambda: (_signed(), BODY + b" "), "no valid signature"),
    ("delivery signed with another key", lambda: (signing.sign_headers([b"x" * 32], "msg_1", NOW, BODY), BODY),
     "no valid signature"),
    ("delivery with a signature that is not base64", _with(webhook_signature="v1,@@@"), "no valid signature"),
    ("delivery with an unknown signature version", _with(webhook_signature="v9,AAAA"), "no valid signature"),
    ("delivery with 10,000 signatures", _with(webhook_signature=" ".join(["v1,AAAA"] * 10_000)),
     "no valid signature"),
]


@pytest.mark.parametrize(("name", "build", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_hostile_delivery_is_refused_with_its_reason(
    name: str, build: Callable[[], tuple[Headers, bytes]], reason: str
) -> None:
    headers, body = build()
    with pytest.raises(ha.InvalidDelivery) as refused:
        ha.verify([KEY], headers, body, now=NOW)
    assert reason in str(refused.value), name
    # The verifier keeps no state: the genuine delivery still goes through after the refusal.
    assert ha.verify([KEY], _signed(), BODY, now=NOW) == "msg_1"


def test_rows_are_documented() -> None:
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    assert [r[0] for r in ROWS if r[0] not in doc] == []
