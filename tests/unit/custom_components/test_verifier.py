"""The custom integration's self-contained verifier agrees with the ``standardwebhooks`` package and with the
daemon's signer. Loaded from its file: it runs inside Home Assistant and imports nothing of ours."""

from __future__ import annotations

import importlib.util
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from homeiq_daemon.webhooks import signing
from tests.support.hypo import examples

SIGNATURE_PY = Path(__file__).resolve().parents[3] / "custom_components" / "homeiq_webhook" / "signature.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("homeiq_webhook_signature", SIGNATURE_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ha = _load()
keys = st.binary(min_size=24, max_size=64)
texts = st.text(max_size=300).map(str.encode)


def test_imports_nothing_of_the_daemon() -> None:
    source = SIGNATURE_PY.read_text()
    assert "homeiq_daemon" not in source
    assert "homeassistant" not in source


@settings(max_examples=examples(150), deadline=None)
@given(key=keys, body=texts, msg_id=st.from_regex(r"msg_[0-9a-f]{1,32}", fullmatch=True))
def test_accepts_reference_signatures(key: bytes, body: bytes, msg_id: str) -> None:
    now = int(time.time())
    secret = signing.encode_secret(key)
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": sig}
    assert ha.verify(ha.parse_secrets(secret), headers, body, now) == msg_id
    # ... and the daemon's own headers for the same delivery.
    ours = signing.sign_headers([key], msg_id, now, body)
    assert ha.verify([key], ours, body, now) == msg_id


@settings(max_examples=examples(150), deadline=None)
@given(key=keys, body=texts, flip=st.integers(min_value=0, max_value=10_000))
def test_rejects_tampering(key: bytes, body: bytes, flip: int) -> None:
    now = int(time.time())
    headers = signing.sign_headers([key], "msg_1", now, body)
    tampered = bytearray(body + b"!")
    tampered[flip % len(tampered)] ^= 0x01
    with pytest.raises(ha.InvalidDelivery):
        ha.verify([key], headers, bytes(tampered), now)
    with pytest.raises(ha.InvalidDelivery):
        ha.verify([os.urandom(32)], headers, body, now)


def test_timestamp_window_and_rotation() -> None:
    old, new = os.urandom(32), os.urandom(32)
    now = 1_700_000_000
    body = b'{"rule":"x"}'
    headers = signing.sign_headers([new, old], "msg_r", now, body)
    assert ha.verify([old], headers, body, now + 300) == "msg_r"
    assert ha.verify([new], headers, body, now - 300) == "msg_r"
    with pytest.raises(ha.InvalidDelivery, match="too old"):
        ha.verify([old], headers, body, now + 301)
    with pytest.raises(ha.InvalidDelivery, match="too old or too far"):
        ha.verify([old], headers, body, now - 301)
    with pytest.raises(ha.InvalidDelivery, match="missing"):
        ha.verify([old], {"webhook-id": "m", "webhook-timestamp": str(now)}, body, now)
    with pytest.raises(ha.InvalidDelivery, match="not a number"):
        ha.verify([old], {**headers, "webhook-timestamp": "-5"}, body, now)


def test_secret_parsing() -> None:
    key = os.urandom(32)
    assert ha.parse_secrets(f"  {signing.encode_secret(key)}  ") == [key]
    for bad in ["", "nope", "whsec_***", "whsec_AAAA"]:
        with pytest.raises(ha.InvalidSecret) as info:
            ha.parse_secrets(bad)
        assert bad not in str(info.value) or bad == ""
