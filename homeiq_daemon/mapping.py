"""State -> InfluxDB point, compatible by default with Home Assistant's own InfluxDB integration.

The schema is the one HA's ``influxdb`` integration writes (so existing Grafana dashboards keep working):

* measurement: the ``unit_of_measurement`` attribute, else the entity_id; ``measurement_attr``,
  ``default_measurement``, ``override_measurement`` and per-entity/domain/glob overrides as in HA;
* tags ``domain`` and ``entity_id`` (the object id, without the domain), plus ``tags`` and
  ``tags_attributes``;
* fields: numeric state -> ``value`` (float); a state HA reads as a number (on/off, open/closed, home/not_home,
  …) -> ``value`` plus the string ``state``; any other state -> ``state``; attributes -> float fields, or
  ``<name>_str`` string fields (plus the number in ``<name>`` when the string holds one, as HA does);
* ``unknown``, ``unavailable`` and empty states are skipped; NaN and infinities are dropped.

Deliberate difference: the timestamp is the state's ``last_updated`` (HA uses the time the event fired),
so a replayed or gap-filled point lands at its true time and writing it twice leaves one point.
Pure code: no IO.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from homeiq_daemon.config import EntityCustomization, EntityFilter, MappingSettings, _glob_regex
from homeiq_daemon.lineprotocol import FieldValue, Point
from homeiq_daemon.model import EntityState

SKIPPED_STATES = frozenset(("unknown", "unavailable", ""))
# homeassistant/helpers/state.py: state_as_number
_STATE_ONE = frozenset(("on", "locked", "above_horizon", "open", "home"))
_STATE_ZERO = frozenset(("off", "unlocked", "unknown", "below_horizon", "closed", "not_home"))
# homeassistant/components/influxdb/const.py: a string with a number inside also gets a float field.
_RE_DIGIT_TAIL = re.compile(r"^[^\.]*\d+\.?\d+[^\.]*$")
_RE_DECIMAL = re.compile(r"[^\d.]+")

_CACHE_LIMIT = 65_536
_NO_NUMBER = object()

TagSource = Callable[[str], Mapping[str, str]]


def _to_float(value: Any) -> float | None:
    """float(value) as Python does it (HA relies on that), None when it fails."""
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        return None


class PointMapper:
    """Turns entity states into points. Caches per-entity decisions; one instance per pipeline."""

    def __init__(self, settings: MappingSettings, extra_tags: TagSource | None = None) -> None:
        self._settings = settings
        self._filter = EntityFilter(settings.include, settings.exclude)
        self._tags_attributes = frozenset(settings.tags_attributes)
        self._global_ignore = frozenset(settings.ignore_attributes)
        self._measurement_attr = settings.measurement_attr
        self._global_tags = dict(settings.tags)
        self._extra_tags = extra_tags
        self._customize_glob = [
            (_glob_regex([glob]), custom) for glob, custom in settings.component_config_glob.items()
        ]
        self._entity_config: dict[str, tuple[str | None, frozenset[str]]] = {}
        # str(value) -> (float or None, float from the digit-tail rule or None): attribute strings repeat.
        self._string_numbers: dict[str, tuple[float | None, float | None]] = {}

    def accepts(self, entity_id: str) -> bool:
        return self._filter(entity_id)

    def _customization(self, entity_id: str) -> tuple[str | None, frozenset[str]]:
        cached = self._entity_config.get(entity_id)
        if cached is not None:
            return cached
        # Like HA's EntityValues: domain, then globs, then the entity itself; later ones win.
        layers: list[EntityCustomization] = []
        domain = entity_id.partition(".")[0]
        s = self._settings
        if domain in s.component_config_domain:
            layers.append(s.component_config_domain[domain])
        for regex, custom in self._customize_glob:
            if regex is not None and regex.match(entity_id):
                layers.append(custom)
        if entity_id in s.component_config:
            layers.append(s.component_config[entity_id])
        override: str | None = None
        ignore: list[str] = []
        for layer in layers:
            if "override_measurement" in layer.model_fields_set:
                override = layer.override_measurement
            if "ignore_attributes" in layer.model_fields_set:
                ignore = list(layer.ignore_attributes)
        if len(self._entity_config) >= _CACHE_LIMIT:
            self._entity_config.clear()
        result = self._entity_config[entity_id] = (override, frozenset(ignore) | self._global_ignore)
        return result

    def _string_number(self, text: str) -> tuple[float | None, float | None]:
        cached = self._string_numbers.get(text)
        if cached is None:
            as_float = _to_float(text)
            tail: float | None = None
            if as_float is None and _RE_DIGIT_TAIL.match(text):
                tail = _to_float(_RE_DECIMAL.sub("", text))
            if len(self._string_numbers) >= _CACHE_LIMIT:
                self._string_numbers.clear()
            cached = self._string_numbers[text] = (as_float, tail)
        return cached

    def map_state(self, state: EntityState) -> Point | None:
        """The point for one state, or None when the state is skipped or filtered out."""
        raw_state = state.state
        if raw_state in SKIPPED_STATES or not self._filter(state.entity_id):
            return None
        attributes = state.attributes
        entity_id = state.entity_id
        domain, _, object_id = entity_id.partition(".")

        fields: dict[str, FieldValue] = {}
        include_state = include_value = False
        value = self._string_number(raw_state)[0]
        if value is not None:
            include_value = True
        elif raw_state in _STATE_ONE:
            value, include_state, include_value = 1.0, True, True
        elif raw_state in _STATE_ZERO:
            value, include_state, include_value = 0.0, True, True
        else:
            include_state = True

        override, ignore = self._customization(entity_id)
        include_uom = include_dc = True
        measurement: Any = override
        if measurement in (None, ""):
            settings = self._settings
            if settings.override_measurement:
                measurement = settings.override_measurement
            else:
                attr = self._measurement_attr
                if attr == "entity_id":
                    measurement = entity_id
                elif attr == "domain__device_class":
                    device_class = attributes.get("device_class")
                    if device_class is None:
                        measurement = domain
                    else:
                        measurement = f"{domain}__{device_class}"
                        include_dc = False
                else:
                    measurement = attributes.get(attr)
                if measurement in (None, ""):
                    measurement = settings.default_measurement or entity_id
                else:
                    include_uom = attr != "unit_of_measurement"
        measurement = str(measurement)

        tags: dict[str, str] = {"domain": domain, "entity_id": object_id}
        if include_state:
            fields["state"] = raw_state
        if include_value and value is not None and math.isfinite(value):
            fields["value"] = value

        tags_attributes = self._tags_attributes
        for key, attr_value in attributes.items():
            if key in tags_attributes:
                tags[key] = str(attr_value)
                continue
            if (
                (key == "unit_of_measurement" and not include_uom)
                or (key == "device_class" and not include_dc)
                or key in ignore
            ):
                continue
            if key in fields:
                key = f"{key}_"
            if attr_value is True or attr_value is False or type(attr_value) in (int, float):
                number: float | None = float(attr_value)
                tail = None
            elif isinstance(attr_value, str):
                number, tail = self._string_number(attr_value)
            else:
                number = _to_float(attr_value)
                tail = None if number is not None else self._string_number(str(attr_value))[1]
            if number is not None:
                if math.isfinite(number):
                    fields[key] = number
                continue
            # Like HA: the text form, plus the number in it (HA applies that to lists and dicts too).
            fields[f"{key}_str"] = attr_value if isinstance(attr_value, str) else str(attr_value)
            if tail is not None and math.isfinite(tail):
                fields[key] = tail

        if self._global_tags:
            tags.update(self._global_tags)
        if self._extra_tags is not None:
            tags.update(self._extra_tags(entity_id))
        if not fields:
            return None
        return Point(measurement, tags, fields, state.last_updated_ns)
