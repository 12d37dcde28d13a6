"""Standard Webhooks signing, checked against the independent ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from homeiq_daemon.model import EntityState, StateChange
from homeiq_daemon.webhooks import signing
from homeiq_daemon.webhooks.payload import build_body, new_delivery_id
from homeiq_daemon.webhooks.rules import Match
from tests.support.hypo import examples

keys = st.binary(min_size=24, max_size=64)
bodies = st.binary(max_size=2048)
# The reference decodes the body as UTF-8 text before signing; the daemon always sends UTF-8 JSON.
utf8_bodies = st.text(max_size=512).map(str.encode)
msg_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=40)


def secret_of(key: bytes) -> str:
    return signing.encode_secret(key)


# Computed once outside the project with the standard library alone:
#   base64.b64encode(hmac.new(bytes(range(32)), b"msg_1.1700000000.{}", hashlib.sha256).digest())
KNOWN_SIGNATURE = "v1,fhksJF5ElKjlPoT/jtefCO5XjQPvhf7Dhf/8R1ad9yU="
KNOWN_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # "whsec_" + base64(bytes(range(32)))


def test_known_vector() -> None:
    key = bytes(range(32))
    assert secret_of(key) == KNOWN_SECRET
    sig = signing.signature(key, "msg_1", 1_700_000_000, b"{}")
    assert sig == KNOWN_SIGNATURE
    reference = Webhook(secret_of(key)).sign("msg_1", datetime.fromtimestamp(1_700_000_000, UTC), "{}")
    assert sig == reference


@settings(max_examples=examples(200), deadline=None)
@given(key=keys, msg_id=msg_ids, body=utf8_bodies)
def test_reference_accepts_what_we_sign(key: bytes, msg_id: str, body: bytes) -> None:
    now = int(time.time())
    headers = signing.sign_headers([key], msg_id, now, body)
    Webhook(secret_of(key)).verify(body, headers, json_parse=False)


@settings(max_examples=examples(200), deadline=None)
@given(key=keys, msg_id=msg_ids, body=bodies)
def test_we_accept_what_we_sign_and_reject_any_tamper(key: bytes, msg_id: str, body: bytes) -> None:
    now = int(time.time())
    headers = signing.sign_headers([key], msg_id, now, body)
    assert signing.verify([key], headers, body, now) == msg_id
    with pytest.raises(signing.VerificationError):
        signing.verify([key], headers, body + b" ", now)
    with pytest.raises(signing.VerificationError):
        signing.verify([key], {**headers, "webhook-id": msg_id + "x"}, body, now)
    with pytest.raises(signing.VerificationError):
        signing.verify([bytes(b ^ 1 for b in key)], headers, body, now)


@settings(max_examples=examples(100), deadline=None)
@given(old=keys, new=keys, body=utf8_bodies)
def test_rotation_signs_with_every_secret(old: bytes, new: bytes, body: bytes) -> None:
    headers = signing.sign_headers([new, old], "msg_rot", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (old, new):  # a receiver still on the old secret, and one already on the new
        Webhook(secret_of(key)).verify(body, headers, json_parse=False)


def _payload() -> tuple[bytes, str]:
    new = EntityState("sensor.t", "26.5", {"unit_of_measurement": "°C", "z": 1, "a": [1, 2]}, "x", "x", 1)
    old = EntityState("sensor.t", "24", {"unit_of_measurement": "°C"}, "w", "w", 0)
    match = Match("hot", "ha", StateChange("sensor.t", new, old, "live"), time.time_ns(), time.time_ns())
    delivery_id = new_delivery_id()
    return build_body(match, delivery_id), delivery_id


def test_reference_rejects_tampered_body_wrong_secret_stale_timestamp() -> None:
    key = os.urandom(32)
    body, delivery_id = _payload()
    now = int(time.time())
    headers = signing.sign_headers([key], delivery_id, now, body)
    wh = Webhook(secret_of(key))
    parsed = wh.verify(body, headers)
    assert parsed["delivery_id"] == delivery_id
    assert parsed["rule"] == "hot"
    # The flaw this guards against: a body re-serialised (sorted keys) after signing.
    resorted = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    assert resorted != body
    with pytest.raises(WebhookVerificationError):
        wh.verify(resorted, headers)
    with pytest.raises(WebhookVerificationError):
        wh.verify(body.replace(b"26.5", b"99.9"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_of(os.urandom(32))).verify(body, headers)
    stale = signing.sign_headers([key], delivery_id, now - 301, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        wh.verify(body, stale)
    future = signing.sign_headers([key], delivery_id, now + 301, body)
    with pytest.raises(WebhookVerificationError, match="too new"):
        wh.verify(body, future)
    # And our own verifier agrees on all of them.
    assert signing.verify([key], headers, body, now) == delivery_id
    for bad_body, bad_headers in [(resorted, headers), (body, stale), (body, future)]:
        with pytest.raises(signing.VerificationError):
            signing.verify([key], bad_headers, bad_body, now)


def test_unsigned_target_sends_id_and_timestamp_only() -> None:
    headers = signing.sign_headers([], "msg_x", 5, b"{}")
    assert headers == {"webhook-id": "msg_x", "webhook-timestamp": "5"}
    with pytest.raises(signing.VerificationError, match="missing"):
        signing.verify([os.urandom(32)], headers, b"{}", 5)


def test_verify_ignores_unknown_versions_and_garbage() -> None:
    key = os.urandom(32)
    good = signing.signature(key, "m", 10, b"b")
    headers = {"Webhook-Id": "m", "Webhook-Timestamp": "10", "Webhook-Signature": f"v2,xyz garbage {good}"}
    assert signing.verify([key], headers, b"b", 10) == "m"
    with pytest.raises(signing.VerificationError, match="integer"):
        signing.verify([key], {**headers, "Webhook-Timestamp": "1e3"}, b"b", 10)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("abc", "must look like"),
        ("whsec_!!!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("", "is empty"),
    ],
)
def test_secret_format_errors(text: str, problem: str) -> None:
    with pytest.raises(signing.SecretFormatError, match=problem):
        signing.parse_secrets(text)


@given(key=keys)
def test_secret_round_trip_padded_or_not(key: bytes) -> None:
    text = secret_of(key)
    assert signing.parse_secrets(text) == [key]
    assert signing.parse_secrets(text.rstrip("=")) == [key]
    # The reference reads our secret text the same way.
    assert Webhook(text)._whsecret == key
