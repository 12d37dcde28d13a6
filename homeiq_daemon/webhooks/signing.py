"""Standard Webhooks signing (https://www.standardwebhooks.com/): pure functions, no IO.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"`` over the exact body bytes that go on the
wire; the signature header is ``v1,<base64 HMAC-SHA256>``, one per active secret, separated by spaces, so a
receiver holding either the old or the new secret accepts deliveries during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from homeiq_daemon.config.webhooks import (  # the secret format is part of the configuration
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    SECRET_PREFIX,
    SecretFormatError,
    decode_secret,
    encode_secret,
    parse_secrets,
)

__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "TOLERANCE_S",
    "SecretFormatError",
    "VerificationError",
    "decode_secret",
    "encode_secret",
    "parse_secrets",
    "sign_headers",
    "signature",
    "verify",
]

TOLERANCE_S = 300  # receivers accept timestamps within ±5 minutes


class VerificationError(Exception):
    """A delivery that must be refused; the message says why (never the secret)."""


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
