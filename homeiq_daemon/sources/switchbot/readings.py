"""SwitchBot readings, sans-IO: device status and webhook ``changeReport`` payloads -> entity states.

Each device becomes entities ``switchbot.<name_or_id>_<reading>`` (``switchbot.living_room_meter_temperature``)
whose attributes are those of a Home Assistant sensor (``unit_of_measurement``, ``device_class``,
``state_class``, ``friendly_name``), so the point mapping writes them in the same InfluxDB schema as HA
entities. Field names and units are those of the API description (OpenWonderLabs/SwitchBotAPI README, "Get
device status" and "Receive events from webhook"). Untrusted input: anything malformed raises ProtocolError.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import EntityState, StateChange, ns_to_iso
from homeiq_daemon.sources.switchbot.api import MAX_TEXT, SwitchBotDevice

DOMAIN = "switchbot"
MAX_WEBHOOK_BYTES = 16 * 1024  # a changeReport is a few hundred bytes
# timeOfSample older than this, or in the future, is not trusted (the README's samples show 123456789)
SAMPLE_MAX_AGE_S = 86_400

Converter = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class ReadingSpec:
    key: str  # entity id suffix
    label: str  # friendly name suffix
    unit: str | None = None
    device_class: str | None = None
    numeric: bool = True


@dataclass(frozen=True, slots=True)
class Reading:
    spec: ReadingSpec
    state: str


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _on_off(value: Any) -> str | None:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return {1: "on", 0: "off"}.get(value)
    if isinstance(value, str):
        return {"on": "on", "off": "off", "detected": "on", "not_detected": "off"}.get(value.strip().lower())
    return None


def _word(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip().lower()[:64] or None


def _opening(value: Any) -> str | None:
    """Contact sensor ``openState``: open / close / timeOutNotClose (still open) -> on/off like HA's door."""
    if not isinstance(value, str):
        return None
    return {"open": "on", "timeoutnotclose": "on", "close": "off", "closed": "off"}.get(value.strip().lower())


TEMPERATURE = ReadingSpec("temperature", "Temperature", "°C", "temperature")
HUMIDITY = ReadingSpec("humidity", "Humidity", "%", "humidity")
BATTERY = ReadingSpec("battery", "Battery", "%", "battery")
LIGHT_LEVEL = ReadingSpec("light_level", "Light level")  # 1-20, no unit
CO2 = ReadingSpec("co2", "CO2", "ppm", "carbon_dioxide")
VOLTAGE = ReadingSpec("voltage", "Voltage", "V", "voltage")
CURRENT = ReadingSpec("current", "Current", "mA", "current")
POWER = ReadingSpec("power", "Power", "W", "power")
POSITION = ReadingSpec("position", "Position", "%")
SWITCH = ReadingSpec("switch", "Switch", numeric=False)
MOTION = ReadingSpec("motion", "Motion", device_class="motion", numeric=False)
PRESENCE = ReadingSpec("presence", "Presence", device_class="occupancy", numeric=False)
CONTACT = ReadingSpec("contact", "Contact", device_class="door", numeric=False)
DOOR = ReadingSpec("door", "Door", device_class="door", numeric=False)
LOCK = ReadingSpec("lock", "Lock", numeric=False)
LEAK = ReadingSpec("leak", "Leak", device_class="moisture", numeric=False)

# payload field -> (spec, converter); one table for status bodies and webhook contexts
FIELDS: dict[str, tuple[ReadingSpec, Converter]] = {
    "temperature": (TEMPERATURE, _number),
    "humidity": (HUMIDITY, _number),
    "battery": (BATTERY, _number),
    "lightLevel": (LIGHT_LEVEL, _number),
    "CO2": (CO2, _number),
    "voltage": (VOLTAGE, _number),
    "electricCurrent": (CURRENT, _number),
    "weight": (POWER, _number),  # Plug Mini (US/JP): the documented name of the power reading
    "slidePosition": (POSITION, _number),
    "powerState": (SWITCH, _on_off),  # webhook, Plug Mini (US/JP)
    "switchStatus": (SWITCH, _on_off),  # Plug Mini (EU), 1/0
    "moveDetected": (MOTION, _on_off),
    "detectionState": (MOTION, _on_off),  # webhook, motion sensor: DETECTED / NOT_DETECTED
    "Detected": (PRESENCE, _on_off),
    "openState": (CONTACT, _opening),
    "doorState": (DOOR, _opening),
    "lockState": (LOCK, _word),
}
_LEAK_TYPES = frozenset({"Water Detector"})


def _power(value: Any) -> Reading | None:
    """``power`` is "ON"/"OFF" on a Bot or Plug, but watts on a Plug Mini (EU)."""
    if isinstance(value, str):
        state = _on_off(value)
        return Reading(SWITCH, state) if state is not None else None
    state = _number(value)
    return Reading(POWER, state) if state is not None else None


def readings(payload: Mapping[str, Any], device_type: str | None = None) -> list[Reading]:
    """The readings found in one status body or webhook context; unknown fields are ignored."""
    found: dict[str, Reading] = {}
    for field, value in payload.items():
        if field == "power":
            reading = _power(value)
        elif field == "status" and device_type in _LEAK_TYPES:
            state = _on_off(value)
            reading = Reading(LEAK, state) if state is not None else None
        else:
            known = FIELDS.get(field)
            if known is None:
                continue
            state = known[1](value)
            reading = Reading(known[0], state) if state is not None else None
        if reading is not None:
            found.setdefault(reading.spec.key, reading)
    return list(found.values())


def status_readings(body: Any) -> list[Reading]:
    """Readings from a ``GET /v1.1/devices/{id}/status`` body (temperatures there are in °C)."""
    if not isinstance(body, dict):
        raise ProtocolError("device status: body is not an object")
    device_type = body.get("deviceType")
    return readings(body, device_type if isinstance(device_type, str) else None)


# --- webhook -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_type: str
    device_id: str
    device_type: str
    readings: tuple[Reading, ...]
    sample_ms: int | None


_MAC = re.compile(r"^[0-9A-Fa-f:-]{1,64}$")


def normalize_device_id(mac: str) -> str:
    """A webhook's ``deviceMac`` (``94A990502B72``, or with colons) -> the device list's ``deviceId``."""
    return mac.replace(":", "").replace("-", "").upper()


def parse_webhook(raw: bytes) -> WebhookEvent:
    """One push from SwitchBot: ``{"eventType", "eventVersion", "context": {"deviceType", "deviceMac", …}}``."""
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise ProtocolError(f"webhook body over {MAX_WEBHOOK_BYTES} bytes")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"webhook body is not JSON: {str(exc)[:80]}") from None
    if not isinstance(event, dict):
        raise ProtocolError("webhook body is not a JSON object")
    event_type = event.get("eventType")
    context = event.get("context")
    if not isinstance(event_type, str) or not event_type or not isinstance(context, dict):
        raise ProtocolError("webhook body needs eventType (text) and context (object)")
    mac = context.get("deviceMac")
    device_type = context.get("deviceType")
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise ProtocolError("webhook context.deviceMac is missing or not a MAC address")
    if not isinstance(device_type, str) or not device_type:
        raise ProtocolError("webhook context.deviceType is missing")
    sample = context.get("timeOfSample")
    sample_ms = sample if isinstance(sample, int) and not isinstance(sample, bool) else None
    found = readings(context, device_type)
    if str(context.get("scale", "")).upper() == "FAHRENHEIT":
        # The push reports the temperature in the unit the app shows; the status API always in °C. One unit
        # per entity keeps push and poll points in one series.
        found = [_to_celsius(r) if r.spec is TEMPERATURE else r for r in found]
    device_id = normalize_device_id(mac)
    return WebhookEvent(event_type[:MAX_TEXT], device_id, device_type[:MAX_TEXT], tuple(found), sample_ms)


def _to_celsius(reading: Reading) -> Reading:
    return Reading(TEMPERATURE, str(round((float(reading.state) - 32.0) * 5.0 / 9.0, 1)))


def sample_time_ns(sample_ms: int | None, received_ns: int) -> int:
    """When SwitchBot measured a pushed reading (``timeOfSample``, ms), else when we received it."""
    if sample_ms is None:
        return received_ns
    sample_ns = sample_ms * 1_000_000
    if received_ns - sample_ns > SAMPLE_MAX_AGE_S * 1_000_000_000 or sample_ns <= 0:
        return received_ns
    return min(sample_ns, received_ns)  # a clock running ahead must not block the next poll's point


# --- entities -------------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """Like Home Assistant's object ids: ASCII lower case, runs of anything else become one underscore."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")[:100]


def object_ids(devices: Iterable[SwitchBotDevice]) -> dict[str, str]:
    """device id -> the object id prefix of its entities: the name's slug, or the id's. When two devices share
    a slug, the one with the lowest id keeps it and the others get ``<slug>_<id>``, so names are stable."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for device in sorted(devices, key=lambda d: d.device_id):
        base = slugify(device.name) or slugify(device.device_id) or "device"
        slug = base if base not in taken else f"{base}_{slugify(device.device_id)}"
        taken.add(slug)
        result[device.device_id] = slug
    return result


def entity_id(prefix: str, reading: Reading) -> str:
    return f"{DOMAIN}.{prefix}_{reading.spec.key}"


def entity_state(entity: str, reading: Reading, device_name: str, time_ns: int) -> EntityState:
    spec = reading.spec
    attributes: dict[str, Any] = {"friendly_name": f"{device_name} {spec.label}"}
    if spec.unit is not None:
        attributes["unit_of_measurement"] = spec.unit
    if spec.device_class is not None:
        attributes["device_class"] = spec.device_class
    if spec.numeric:
        attributes["state_class"] = "measurement"
    iso = ns_to_iso(time_ns)
    return EntityState(entity, reading.state, attributes, iso, iso, time_ns)


def changes(
    prefix: str,
    device_name: str,
    found: Iterable[Reading],
    time_ns: int,
    last: Callable[[str], EntityState | None],
) -> list[StateChange]:
    """State changes for new readings. A reading equal to the entity's last state is no change (Home
    Assistant fires no ``state_changed`` for it either): a poll repeating what a push already reported adds
    no point, and a reading older than the last one is left to the tracker to drop."""
    out: list[StateChange] = []
    for reading in found:
        entity = entity_id(prefix, reading)
        previous = last(entity)
        if previous is not None and previous.state == reading.state:
            continue
        out.append(StateChange(entity, entity_state(entity, reading, device_name, time_ns), previous, "switchbot"))
    return out
