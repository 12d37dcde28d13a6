"""Standard Webhooks verification for the homeiq_webhook integration. Self-contained on purpose: it runs in
Home Assistant's Python environment, which does not have (and must not need) the daemon's package.

A delivery is genuine when ``webhook-signature`` holds a ``v1,<base64 HMAC-SHA256>`` over
``"{webhook-id}.{webhook-timestamp}.{raw body}"`` made with one of our secrets, and the timestamp is
within the tolerance of our clock (replays of an old, captured request are refused).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix
DEFAULT_TOLERANCE_S = 300
MAX_TOLERANCE_S = 3600
MAX_TIMESTAMP_DIGITS = 12  # seconds until the year 33658; longer is refused before any arithmetic


class InvalidSecret(ValueError):
    """The configured secret is not ``whsec_<base64>``; the message never contains it."""


class InvalidDelivery(Exception):
    """Refuse the request (HTTP 401); the message says why, for the log."""


def parse_secrets(text: str) -> list[bytes]:
    """``whsec_<base64>``, several separated by spaces while the sender rotates secrets."""
    keys: list[bytes] = []
    for part in text.split():
        if not part.startswith(SECRET_PREFIX):
            raise InvalidSecret("secret must look like whsec_<base64>")
        encoded = part[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidSecret("secret: the part after whsec_ is not base64") from None
        if len(key) < 16:
            raise InvalidSecret("secret is too short")
        keys.append(key)
    if not keys:
        raise InvalidSecret("secret is empty")
    return keys


def _expected(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()


def verify(
    keys: Iterable[bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Return the delivery's ``webhook-id`` or raise InvalidDelivery. ``headers`` lookups are case-insensitive
    when given aiohttp's CIMultiDict; a plain dict must use lower-case names."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise InvalidDelivery("missing webhook-id, webhook-timestamp or webhook-signature header")
    # isdigit() alone admits other scripts' digits, and int() of a 400-digit string overflows the float
    # subtraction (a 5,000-digit one is refused by int() itself): check length and alphabet first.
    if not (0 < len(timestamp) <= MAX_TIMESTAMP_DIGITS and timestamp.isascii() and timestamp.isdigit()):
        raise InvalidDelivery("webhook-timestamp is not a number of seconds")
    if abs(now - int(timestamp)) > tolerance_s:
        raise InvalidDelivery("webhook-timestamp is too old or too far in the future")
    wanted = [_expected(key, msg_id, timestamp, body) for key in keys]
    for item in signatures.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(given, want) for want in wanted):
            return msg_id
    raise InvalidDelivery("no valid signature")
