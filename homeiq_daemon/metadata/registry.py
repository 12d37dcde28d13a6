"""Home Assistant's area, device and entity registries as plain values: parsing, events and enrichment.

Pure code (no sockets, no SQLite). Shapes are those of HA 2024.3's WebSocket API:

* ``config/area_registry/list`` -> ``[{area_id, name, icon, picture, aliases}]`` (later releases add
  ``floor_id``, ``labels``);
* ``config/device_registry/list`` -> ``[{id, name, name_by_user, manufacturer, model, area_id, via_device_id,
  disabled_by, entry_type, sw_version, hw_version, serial_number, configuration_url, …}]``;
* ``config/entity_registry/list`` -> ``[{entity_id, id, unique_id, platform, device_id, area_id, name,
  original_name, disabled_by, hidden_by, entity_category, icon, labels, has_entity_name, …}]``
  (``config/entity_registry/get_entries`` answers ``{entity_id: entry-or-null}`` with a superset of these);
* ``*_registry_updated`` events carry only ids: ``{action: create|update|remove, area_id|device_id|entity_id}``
  (``update`` adds ``changes`` with the *old* values, and ``old_entity_id`` when an entity was renamed).
  So an event tells what to fetch again, never the new values.

Untrusted input: a malformed item raises RegistryError (the caller counts and skips it); strings are bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

MAX_TEXT = 512
MAX_ID = 255

RegistryKind = Literal["area", "device", "entity"]
Action = Literal["create", "update", "remove"]

EVENT_TYPES: dict[str, RegistryKind] = {
    "area_registry_updated": "area",
    "device_registry_updated": "device",
    "entity_registry_updated": "entity",
}
LIST_COMMANDS: dict[RegistryKind, str] = {
    "area": "config/area_registry/list",
    "device": "config/device_registry/list",
    "entity": "config/entity_registry/list",
}


class RegistryError(ValueError):
    """A registry item or event is not of the expected shape."""


@dataclass(frozen=True, slots=True)
class Area:
    area_id: str
    name: str
    icon: str | None = None
    floor_id: str | None = None
    aliases: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str | None = None
    name_by_user: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    area_id: str | None = None
    via_device_id: str | None = None
    disabled_by: str | None = None
    entry_type: str | None = None
    sw_version: str | None = None
    hw_version: str | None = None
    labels: tuple[str, ...] = ()

    @property
    def display_name(self) -> str | None:
        return self.name_by_user or self.name


@dataclass(frozen=True, slots=True)
class RegistryEntity:
    entity_id: str
    platform: str | None = None
    unique_id: str | None = None
    device_id: str | None = None
    area_id: str | None = None
    name: str | None = None
    original_name: str | None = None
    disabled_by: str | None = None
    hidden_by: str | None = None
    entity_category: str | None = None
    icon: str | None = None
    has_entity_name: bool = False
    labels: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.entity_id.partition(".")[0]


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    kind: RegistryKind
    action: Action
    item_id: str
    old_entity_id: str | None = None  # entity renamed: the id it had before


# --- field helpers ----------------------------------------------------------------------------------------


def _text(raw: Mapping[str, Any], key: str, limit: int = MAX_TEXT) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RegistryError(f"{key}: expected a string, got {type(value).__name__}")
    text = str(value)
    return text[:limit]


def _required_id(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise RegistryError(f"{key}: expected a non-empty string id")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise RegistryError(f"{key}: expected a list")
    return tuple(sorted(str(item)[:MAX_TEXT] for item in value if isinstance(item, str | int | float)))[:64]


def _mapping(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RegistryError(f"expected an object, got {type(raw).__name__}")
    return raw


def _entity_id(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_ID:
        raise RegistryError("entity_id: expected a string")
    domain, dot, object_id = value.partition(".")
    if not dot or not domain or not object_id:
        raise RegistryError(f"entity_id: {value[:60]!r} is not domain.object_id")
    return value


# --- parsers ----------------------------------------------------------------------------------------------


def parse_area(raw: object) -> Area:
    item = _mapping(raw)
    area_id = _required_id(item, "area_id")
    return Area(
        area_id=area_id,
        name=_text(item, "name") or area_id,
        icon=_text(item, "icon"),
        floor_id=_text(item, "floor_id", MAX_ID),
        aliases=_strings(item, "aliases"),
        labels=_strings(item, "labels"),
    )


def parse_device(raw: object) -> Device:
    item = _mapping(raw)
    return Device(
        device_id=_required_id(item, "id"),
        name=_text(item, "name"),
        name_by_user=_text(item, "name_by_user"),
        manufacturer=_text(item, "manufacturer"),
        model=_text(item, "model"),
        area_id=_text(item, "area_id", MAX_ID),
        via_device_id=_text(item, "via_device_id", MAX_ID),
        disabled_by=_text(item, "disabled_by", 64),
        entry_type=_text(item, "entry_type", 64),
        sw_version=_text(item, "sw_version"),
        hw_version=_text(item, "hw_version"),
        labels=_strings(item, "labels"),
    )


def parse_entity(raw: object) -> RegistryEntity:
    item = _mapping(raw)
    return RegistryEntity(
        entity_id=_entity_id(item.get("entity_id")),
        platform=_text(item, "platform", MAX_ID),
        unique_id=_text(item, "unique_id"),
        device_id=_text(item, "device_id", MAX_ID),
        area_id=_text(item, "area_id", MAX_ID),
        name=_text(item, "name"),
        original_name=_text(item, "original_name"),
        disabled_by=_text(item, "disabled_by", 64),
        hidden_by=_text(item, "hidden_by", 64),
        entity_category=_text(item, "entity_category", 64),
        icon=_text(item, "icon"),
        has_entity_name=item.get("has_entity_name") is True,
        labels=_strings(item, "labels"),
    )


_PARSERS = {"area": parse_area, "device": parse_device, "entity": parse_entity}


def parse_list(kind: RegistryKind, raw: object) -> tuple[list[Any], int]:
    """A ``*_registry/list`` result -> (parsed items, number of malformed items skipped)."""
    if not isinstance(raw, list):
        raise RegistryError(f"{kind} registry list: expected a list, got {type(raw).__name__}")
    parser = _PARSERS[kind]
    items: list[Any] = []
    bad = 0
    for entry in raw:
        try:
            items.append(parser(entry))
        except RegistryError:
            bad += 1
    return items, bad


def parse_entries(raw: object) -> tuple[list[RegistryEntity], list[str], int]:
    """``config/entity_registry/get_entries`` -> (entries found, ids HA no longer has, malformed count)."""
    found: list[RegistryEntity] = []
    missing: list[str] = []
    bad = 0
    for entity_id, entry in _mapping(raw).items():
        try:
            if entry is None:
                missing.append(_entity_id(entity_id))
            else:
                found.append(parse_entity(entry))
        except RegistryError:
            bad += 1
    return found, missing, bad


_ID_KEYS: dict[RegistryKind, str] = {"area": "area_id", "device": "device_id", "entity": "entity_id"}


def parse_event(event_type: str, data: object) -> RegistryEvent:
    """The ``data`` of an ``*_registry_updated`` event."""
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        raise RegistryError(f"not a registry event: {event_type[:60]!r}")
    item = _mapping(data)
    action = item.get("action")
    if action not in ("create", "update", "remove"):
        raise RegistryError(f"{event_type}: unknown action {str(action)[:40]!r}")
    key = _ID_KEYS[kind]
    item_id = _entity_id(item.get(key)) if kind == "entity" else _required_id(item, key)
    old = item.get("old_entity_id") if kind == "entity" else None
    old_entity_id = _entity_id(old) if old is not None else None
    return RegistryEvent(kind, action, item_id, old_entity_id)


# --- enrichment -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityPlace:
    """Where an entity is: its own area, else its device's; and the device's name."""

    area_id: str | None
    area_name: str | None
    device_id: str | None
    device_name: str | None
    manufacturer: str | None
    model: str | None


def locate(
    entities: Iterable[RegistryEntity], devices: Mapping[str, Device], areas: Mapping[str, Area]
) -> dict[str, EntityPlace]:
    """Each registry entity's effective area (own area wins over the device's) and device."""
    places: dict[str, EntityPlace] = {}
    for entity in entities:
        device = devices.get(entity.device_id) if entity.device_id else None
        area_id = entity.area_id or (device.area_id if device else None)
        area = areas.get(area_id) if area_id else None
        places[entity.entity_id] = EntityPlace(
            area_id=area_id,
            area_name=area.name if area is not None else None,
            device_id=device.device_id if device else None,
            device_name=device.display_name if device else None,
            manufacturer=device.manufacturer if device else None,
            model=device.model if device else None,
        )
    return places


def tag_table(places: Mapping[str, EntityPlace], *, area: bool, device: bool) -> dict[str, dict[str, str]]:
    """entity_id -> extra point tags. ``area`` is the area id (a stable slug that survives a rename of the
    area, so series do not split); ``device`` is the device's display name (its id is an opaque hash)."""
    table: dict[str, dict[str, str]] = {}
    for entity_id, place in places.items():
        tags: dict[str, str] = {}
        if area and place.area_id:
            tags["area"] = place.area_id
        if device and place.device_name:
            tags["device"] = place.device_name
        if tags:
            table[entity_id] = tags
    return table


class RegistryIndex:
    """What the registries say now, in the form the hot path reads: entity -> place, entity -> tags.

    The registry sync replaces both tables on every change; the point mapping calls the index for an
    entity's enrichment tags (one dict lookup), webhook rules read ``places`` for areas. Built by the app
    before the pipeline, so the pipeline, webhooks and the sync each get it without knowing each other.
    """

    __slots__ = ("places", "tags")

    def __init__(self) -> None:
        self.places: dict[str, EntityPlace] = {}
        self.tags: dict[str, dict[str, str]] = {}

    def __call__(self, entity_id: str) -> Mapping[str, str]:
        return self.tags.get(entity_id, _NO_TAGS)


_NO_TAGS: Mapping[str, str] = {}
