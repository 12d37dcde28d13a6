"""SwitchBot Cloud API v1.1, sans-IO: request signing, response envelopes, the device list, the daily budget.

No sockets here: ``sources/switchbot.py`` sends what this module builds and hands back what it receives.
Facts from the official API description (github.com/OpenWonderLabs/SwitchBotAPI, README "Authentication",
"Request limit", the device list/status tables and "Standard HTTP Error Codes"):

* Every request carries ``Authorization: <token>``, ``t: <13-digit ms timestamp>``, ``nonce: <uuid>`` and
  ``sign: base64(HMAC-SHA256(key=secret, msg=token + t + nonce))``.
* Answers are ``{"statusCode": 100, "body": {…}, "message": "success"}``; anything but 100 is a failure.
* 10,000 requests per account and day. Over the limit SwitchBot has answered, over the years, HTTP 401
  ``{"message": "Unauthorized"}`` (what the README says), HTTP 200 with ``statusCode`` 190 and the message
  "Requests reached the daily limit" (issue OpenWonderLabs/SwitchBotAPI#365), and HTTP 429. A wrong token or
  signature is HTTP 401 as well, so 401 cannot tell the two apart: both stop polling until the next day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from homeiq_daemon.config.switchbot import DAY_S
from homeiq_daemon.errors import AuthError, HomeIQError, ProtocolError

API_PREFIX = "/v1.1"
MAX_TEXT = 255

STATUS_OK = 100
STATUS_SYSTEM_ERROR = 190  # "device internal error", or the daily limit (see the message)
DEVICE_STATUS_CODES = {151: "device type error", 152: "device not found", 160: "command is not supported",
                       161: "device offline", 171: "hub device is offline"}  # fmt: skip
NO_HUB = "000000000000"


# --- errors -------------------------------------------------------------------------------------------------


class SwitchBotError(HomeIQError):
    """A SwitchBot Cloud request failed."""


class SwitchBotTransientError(SwitchBotError):
    """5xx, a timeout, a dropped connection or a garbled answer: the same request may work later."""


class SwitchBotQuotaError(SwitchBotError):
    """The account's daily request quota is used up; nothing works before SwitchBot's day rolls over."""


class SwitchBotAuthError(AuthError):
    """HTTP 401/403: a wrong token or secret (or, per the README, the daily limit: SwitchBot says the same)."""


class SwitchBotRequestError(SwitchBotError):
    """SwitchBot refused this one request (a 4xx, or a statusCode about the request or one device)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


# --- signing ------------------------------------------------------------------------------------------------


def signature(token: str, secret: str, t_ms: int | str, nonce: str) -> str:
    """``sign`` for one request. The README's prose also says "convert the signature to upper case", but its
    own example code (Python 2/3, JavaScript) and the ``switchbot-api`` package send the base64 text as is,
    and upper-casing base64 would change the bytes it encodes: no upper-casing here."""
    message = f"{token}{t_ms}{nonce}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(token: str, secret: str, *, t_ms: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four authentication headers (a fresh timestamp and nonce unless given)."""
    t = int(time.time() * 1000) if t_ms is None else t_ms
    n = str(uuid.uuid4()) if nonce is None else nonce
    return {"Authorization": token, "t": str(t), "nonce": n, "sign": signature(token, secret, t, n)}


def credential_fingerprint(token: str, secret: str) -> str:
    """A one-way tag of the credentials, stored beside a halt so that new credentials lift it at once."""
    return hashlib.sha256(f"{len(token)}:{token}:{secret}".encode()).hexdigest()[:16]


# --- responses ----------------------------------------------------------------------------------------------


def parse_response(http_status: int, raw: bytes) -> Any:
    """The ``body`` of a successful answer; raises the SwitchBotError subclass that says what to do next."""
    if http_status in (401, 403):
        raise SwitchBotAuthError(
            f"SwitchBot answered HTTP {http_status} (wrong switchbot.token or switchbot.secret, a system clock "
            "far off, or the daily request limit reached)"
        )
    if http_status == 429:
        raise SwitchBotQuotaError("SwitchBot answered HTTP 429 Too Many Requests")
    if http_status >= 500:
        raise SwitchBotTransientError(f"SwitchBot answered HTTP {http_status}")
    if http_status >= 400:
        raise SwitchBotRequestError(f"SwitchBot answered HTTP {http_status}")
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SwitchBotTransientError(f"SwitchBot answered HTTP {http_status} with a body that is not JSON") from None
    if not isinstance(envelope, dict):
        raise SwitchBotTransientError("SwitchBot's answer is not a JSON object")
    code = envelope.get("statusCode")
    message = str(envelope.get("message", ""))[:MAX_TEXT]
    if code == STATUS_OK:
        return envelope.get("body")
    if not isinstance(code, int) or isinstance(code, bool):
        raise SwitchBotTransientError("SwitchBot's answer has no statusCode")
    lowered = message.lower()
    if code == STATUS_SYSTEM_ERROR and ("daily limit" in lowered or "too many request" in lowered):
        raise SwitchBotQuotaError(f"SwitchBot statusCode {code}: {message}")
    described = DEVICE_STATUS_CODES.get(code, message or "error")
    raise SwitchBotRequestError(f"SwitchBot statusCode {code}: {described}", status_code=code)


# --- the device list ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwitchBotDevice:
    device_id: str
    name: str
    device_type: str
    hub_device_id: str | None = None
    cloud_service: bool = True


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def parse_device_list(body: Any) -> list[SwitchBotDevice]:
    """Physical devices from ``GET /v1.1/devices`` (``infraredRemoteList`` entries have no status to poll)."""
    if not isinstance(body, dict) or not isinstance(body.get("deviceList", []), list):
        raise ProtocolError("device list: body.deviceList is not a list")
    devices: list[SwitchBotDevice] = []
    for item in body.get("deviceList", []):
        if not isinstance(item, dict):
            continue
        device_id = _text(item.get("deviceId"))
        if device_id is None:
            continue
        hub = _text(item.get("hubDeviceId"))
        devices.append(
            SwitchBotDevice(
                device_id=device_id,
                name=_text(item.get("deviceName")) or device_id,
                device_type=_text(item.get("deviceType")) or "unknown",
                hub_device_id=None if hub in (None, NO_HUB, device_id) else hub,
                cloud_service=item.get("enableCloudService") is not False,
            )
        )
    return devices


# Device types whose status carries readings; "all devices" means these (a Hub Mini or a Keypad would only
# cost requests). A device named in ``switchbot.devices`` is polled whatever its type.
READABLE_TYPES = frozenset({
    "Meter", "MeterPlus", "Meter Plus (JP)", "WoIOSensor", "WeatherStation", "MeterPro", "MeterPro(CO2)",
    "Hub 2", "Hub 3", "Plug", "Plug Mini (US)", "Plug Mini (JP)", "Plug Mini (EU)", "Bot", "Curtain",
    "Curtain3", "Motion Sensor", "Contact Sensor", "Presence Sensor", "Water Detector", "Smart Lock",
    "Smart Lock Pro", "Humidifier",
})  # fmt: skip


def select_devices(devices: list[SwitchBotDevice], wanted: list[str]) -> tuple[list[SwitchBotDevice], list[str]]:
    """The devices to poll: those named in ``wanted`` (by id or name, case-insensitive), or every readable
    device with cloud service on when ``wanted`` is empty. Also returns the wanted entries that matched nothing."""
    if not wanted:
        return [d for d in devices if d.device_type in READABLE_TYPES and d.cloud_service], []
    chosen: dict[str, SwitchBotDevice] = {}
    missing: list[str] = []
    for entry in wanted:
        key = entry.strip().casefold()
        hits = [d for d in devices if d.device_id.casefold() == key or d.name.casefold() == key]
        if not hits:
            missing.append(entry)
        for device in hits:
            chosen.setdefault(device.device_id, device)
    return sorted(chosen.values(), key=lambda d: d.device_id), missing


# --- the daily budget ---------------------------------------------------------------------------------------


def utc_day(now_s: float) -> str:
    return datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%d")


def seconds_to_next_day(now_s: float) -> float:
    now = datetime.fromtimestamp(now_s, UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return max(0.0, (midnight - now).total_seconds())


def poll_interval_s(devices: int, usable: int, list_interval_s: float, min_interval_s: float) -> float:
    """Seconds between two polls of one device, such that ``devices`` polled round-robin plus the device list
    every ``list_interval_s`` (and once at start) stay within ``usable`` requests per day.

    Each device gets ``k = (usable - list calls) // devices`` polls a day; with fewer requests than devices,
    each device is polled every few days. Never below ``min_interval_s``.
    """
    if devices <= 0:
        return max(min_interval_s, float(DAY_S))
    for_polls = usable - (math.ceil(DAY_S / list_interval_s) + 1)
    if for_polls <= 0:
        return math.inf
    per_device = for_polls // devices
    # a hair longer than the exact figure, so float rounding can never squeeze one request more into a day
    interval = DAY_S / per_device if per_device >= 1 else DAY_S * devices / for_polls
    return max(min_interval_s, interval * (1 + 1e-9))


def request_spacing_s(nominal_spacing_s: float, seconds_left: float, requests_left: int) -> float:
    """Wait before the next request: the nominal pace, slowed down when the day's remaining requests would
    not last until midnight (after a restart with part of the budget spent, or after retries). With this pace
    the requests left always last exactly to the end of the day, so the budget cannot run out early."""
    if requests_left <= 0:
        return seconds_left
    return max(nominal_spacing_s, seconds_left / requests_left)


RESERVE_BLOCK = 20


@dataclass(slots=True)
class DailyBudget:
    """Requests spent today (UTC) against ``cap``. Persisted write-ahead in blocks: before a request takes the
    count past what is on disk, ``RESERVE_BLOCK`` more are recorded as spent, so a crash or restart can only
    over-count (never lose) requests, at one SQLite write per block rather than per request."""

    cap: int
    day: str
    used: int = 0
    persisted: int = 0

    @classmethod
    def restore(cls, cap: int, stored: Any, now_s: float) -> DailyBudget:
        today = utc_day(now_s)
        if isinstance(stored, dict) and stored.get("day") == today:
            used = stored.get("used")
            if isinstance(used, int) and not isinstance(used, bool) and used >= 0:
                return cls(cap=cap, day=today, used=used, persisted=used)
        return cls(cap=cap, day=today)

    def roll(self, now_s: float) -> bool:
        """Start a new day's count when the UTC date changed. True when it did."""
        today = utc_day(now_s)
        if today == self.day:
            return False
        self.day, self.used, self.persisted = today, 0, 0
        return True

    @property
    def left(self) -> int:
        return max(0, self.cap - self.used)

    def take(self, now_s: float) -> bool:
        """Spend one request; False (nothing spent) when today's cap is reached."""
        self.roll(now_s)
        if self.used >= self.cap:
            return False
        self.used += 1
        return True

    def reservation(self) -> dict[str, Any] | None:
        """What to persist before sending, or None when the disk already covers this request."""
        if self.used <= self.persisted:
            return None
        self.persisted = min(self.cap, self.used + RESERVE_BLOCK - 1)
        return {"day": self.day, "used": self.persisted}
