"""Standard Webhooks signing (https://www.standardwebhooks.com/): pure functions, no IO.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"`` over the exact body bytes that go on the
wire; the signature header is ``v1,<base64 HMAC-SHA256>``, one per active secret, separated by spaces, so a
receiver holding either the old or the new secret accepts deliveries during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 24  # the spec's recommended range: 24 to 64 random bytes
MAX_SECRET_BYTES = 64
TOLERANCE_S = 300  # receivers accept timestamps within ±5 minutes


class SecretFormatError(ValueError):
    pass


class VerificationError(Exception):
    """A delivery that must be refused; the message says why (never the secret)."""


def decode_secret(text: str) -> bytes:
    """``whsec_<base64>`` -> key bytes. Raises SecretFormatError naming what is wrong, never echoing it."""
    if not text.startswith(SECRET_PREFIX):
        raise SecretFormatError(f"must look like {SECRET_PREFIX}<base64 of 24 to 64 random bytes>")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"the part after {SECRET_PREFIX} is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SecretFormatError(
            f"decodes to {len(key)} bytes; use 24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))"
        )
    return key


def parse_secrets(text: str) -> list[bytes]:
    """Several secrets separated by whitespace (a rotation window): the first is the newest."""
    keys = [decode_secret(part) for part in text.split()]
    if not keys:
        raise SecretFormatError("is empty")
    return keys


def encode_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature over exactly ``id.timestamp.body``."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; without keys, only id and timestamp (an unsigned target)."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if keys:
        headers["webhook-signature"] = " ".join(signature(key, msg_id, timestamp, body) for key in keys)
    return headers


def verify(
    keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int = TOLERANCE_S
) -> str:
    """Check a delivery as a receiver would; returns its webhook-id or raises VerificationError."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    header = lowered.get("webhook-signature")
    if not msg_id or not stamp or not header:
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isascii() or not stamp.isdigit():
        raise VerificationError("webhook-timestamp is not an integer")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_s:
        raise VerificationError("webhook-timestamp is outside the tolerance")
    expected = [signature(key, msg_id, timestamp, body) for key in keys]
    for candidate in header.split():
        version, _, _sig = candidate.partition(",")
        if version != "v1":
            continue
        if any(hmac.compare_digest(candidate.encode(), want.encode()) for want in expected):
            return msg_id
    raise VerificationError("no matching signature")
