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
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from homeiq_daemon.config import EntityCustomization, MappingSettings
from homeiq_daemon.model import EntityState
from homeiq_daemon.pipeline.digittail import digit_tail_number, to_float
from homeiq_daemon.pipeline.filter import EntityFilter, glob_regex
from homeiq_daemon.sinks.lineprotocol import LineEncoder, escape_string_value

SKIPPED_STATES = frozenset(("unknown", "unavailable", ""))
# homeassistant/helpers/state.py: state_as_number
_STATE_ONE = frozenset(("on", "locked", "above_horizon", "open", "home"))
_STATE_ZERO = frozenset(("off", "unlocked", "unknown", "below_horizon", "closed", "not_home"))

_CACHE_LIMIT = 8_192  # per cache; a home has a few thousand entities and attribute strings, not more
# Caches keyed by a state or attribute *value*: sensor readings hardly repeat, so a small one does as well.
_VALUE_CACHE_LIMIT = 1_024
_NO_NUMBER = object()
_SCALARS = frozenset((str, float, int, bool, type(None)))

TagSource = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What ``map_line`` needs per entity (and measurement-deciding attribute value)."""

    measurement: str
    series: str | None  # escaped "measurement,tags"; None when tags vary per event
    skip: frozenset[str]  # attribute keys that never become fields
    domain: str
    object_id: str
    accepted: bool  # include/exclude let the entity through


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
            (glob_regex([glob]), custom) for glob, custom in settings.component_config_glob.items()
        ]
        # Attribute-name sets (ignored, skipped) are the same for almost every entity: one object each.
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        # Fast path (map_line): per-entity plans and rendered field fragments, all bounded.
        self._encoder = LineEncoder()
        self._plans: dict[tuple[str, type, Any], _Plan] = {}
        self._plan_attr = "device_class" if self._measurement_attr == "domain__device_class" else self._measurement_attr
        self._str_fragments: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._repr_fragments: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        # raw state -> (its field names, its fields joined)
        self._state_parts: dict[str, tuple[tuple[str, ...], str]] = {}
        self._dynamic_tags = bool(self._tags_attributes) or extra_tags is not None
        # str(value) -> (float or None, float from the digit-tail rule or None): attribute strings repeat.
        self._string_numbers: dict[str, tuple[float | None, float | None]] = {}
        # entity_id -> (attributes, state field names, plan, all values scalar, rendered attribute fields):
        # most events repeat their entity's attributes, so their fields are rendered once.
        self._attr_memo: dict[str, tuple[dict[str, Any], tuple[str, ...], _Plan, bool, str]] = {}

    def accepts(self, entity_id: str) -> bool:
        return self._filter(entity_id)

    def _shared(self, names: frozenset[str]) -> frozenset[str]:
        shared = self._sets.get(names)
        if shared is None:
            if len(self._sets) >= _VALUE_CACHE_LIMIT:
                self._sets.clear()
            shared = self._sets[names] = names
        return shared

    def _customization(self, entity_id: str) -> tuple[str | None, frozenset[str]]:
        """Measurement override and ignored attributes of one entity; computed once per plan (plans are cached
        per entity), so not cached here."""
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
        return override, (self._global_ignore if not ignore else frozenset(ignore) | self._global_ignore)

    def _string_number(self, text: str) -> tuple[float | None, float | None]:
        cached = self._string_numbers.get(text)
        if cached is None:
            as_float = to_float(text)
            # homeassistant/components/influxdb: a string with a number inside also gets a float field.
            tail = digit_tail_number(text) if as_float is None else None
            if len(self._string_numbers) >= _VALUE_CACHE_LIMIT:
                self._string_numbers.clear()
            cached = self._string_numbers[text] = (as_float, tail)
        return cached

    def _measurement(self, entity_id: str, domain: str, attributes: dict[str, Any]
                     ) -> tuple[str, bool, bool, frozenset[str]]:
        """Measurement name, whether the unit / device_class attributes stay fields, and ignored attributes."""
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
        return str(measurement), include_uom, include_dc, ignore

    # --- fast path ----------------------------------------------------------------------------------
    # map_line renders straight to line protocol with cached fragments: a home repeats the same entities, attribute
    # names and attribute strings endlessly, so most of an event's line is dictionary lookups.

    def _plan(self, entity_id: str, attributes: dict[str, Any]) -> _Plan:
        domain, _, object_id = entity_id.partition(".")
        measurement, include_uom, include_dc, ignore = self._measurement(entity_id, domain, attributes)
        skip = set(ignore) | self._tags_attributes
        if not include_uom:
            skip.add("unit_of_measurement")
        if not include_dc:
            skip.add("device_class")
        series = None
        if not self._dynamic_tags:
            tags = {"domain": domain, "entity_id": object_id, **self._global_tags}
            series = self._encoder.series_key(measurement, tags)
        return _Plan(measurement, series, self._shared(frozenset(skip)), sys.intern(domain), object_id,
                     self._filter(entity_id))

    def _state_part(self, raw_state: str) -> tuple[tuple[str, ...], str]:
        """The state's field names (attributes of the same name step aside) and its fields, joined."""
        cached = self._state_parts.get(raw_state)
        if cached is not None:
            return cached
        value = self._string_number(raw_state)[0]
        frags: list[tuple[str, str]] = []
        include_state = False
        if value is None:
            if raw_state in _STATE_ONE:
                value, include_state = 1.0, True
            elif raw_state in _STATE_ZERO:
                value, include_state = 0.0, True
            else:
                include_state = True
        if include_state:
            frags.append(("state", f'state="{escape_string_value(raw_state)}"'))
        if value is not None:
            # Non-finite: not written, but the name stays taken (an attribute "value" becomes "value_").
            frags.append(("value", f"value={value!r}" if math.isfinite(value) else ""))
        result = (tuple(key for key, _ in frags), ",".join(frag for _, frag in frags if frag))
        if len(self._state_parts) >= _VALUE_CACHE_LIMIT:
            self._state_parts.clear()
        self._state_parts[raw_state] = result
        return result

    def _text_fragments(self, key: str, text: str, number: float | None, tail: float | None
                        ) -> tuple[tuple[str, str], ...]:
        def ek(name: str) -> str:
            return self._encoder.field_key(name)

        if number is not None:  # an empty key is no field (as the encoder leaves it out)
            return ((key, f"{ek(key)}={number!r}"),) if key and math.isfinite(number) else ()
        frags = [(f"{key}_str", f'{ek(key + "_str")}="{escape_string_value(text)}"')]
        if key and tail is not None and math.isfinite(tail):
            frags.append((key, f"{ek(key)}={tail!r}"))
        return tuple(frags)

    def _attribute_part(self, plan: _Plan, state_keys: tuple[str, ...], attributes: dict[str, Any]) -> str:
        """The attributes' fields, joined (after the state's fields, which same-named attributes step aside for)."""
        frags: dict[str, str] = dict.fromkeys(state_keys, "")
        skip = plan.skip
        keys = self._encoder._field_keys
        str_cache = self._str_fragments
        for key, value in attributes.items():
            if key in skip:
                continue
            if key in frags:
                key = f"{key}_"
            kind = type(value)
            if kind is str:
                cache_key = (key, value)
                cached = str_cache.get(cache_key)
                if cached is None:
                    number, tail = self._string_number(value)
                    cached = self._text_fragments(key, value, number, tail)
                    if len(str_cache) >= _VALUE_CACHE_LIMIT:  # names (friendly_name) are unique per entity
                        str_cache.clear()
                    str_cache[cache_key] = cached
                for field_key, frag in cached:
                    frags[field_key] = frag
            elif kind is float or kind is int or kind is bool:
                number = float(value)
                if number - number == 0.0 and key:  # finite, and a key to write it under
                    escaped = keys.get(key)
                    if escaped is None:
                        escaped = self._encoder.field_key(key)
                    frags[key] = f"{escaped}={number!r}"
            elif kind is list or kind is dict or value is None:
                # float() always fails on these: HA writes str(value) (and a number found in it).
                text = str(value)
                cache_key = (key, text)
                cached = self._repr_fragments.get(cache_key)
                if cached is None:
                    cached = self._text_fragments(key, text, None, self._string_number(text)[1])
                    if len(self._repr_fragments) >= _CACHE_LIMIT:
                        self._repr_fragments.clear()
                    self._repr_fragments[cache_key] = cached
                for field_key, frag in cached:
                    frags[field_key] = frag
            else:
                number = to_float(value)
                text = str(value)
                tail = None if number is not None else self._string_number(text)[1]
                for field_key, frag in self._text_fragments(key, text, number, tail):
                    frags[field_key] = frag
        return ",".join(frag for key, frag in frags.items() if frag and key not in state_keys)

    def map_line(self, state: EntityState) -> str | None:
        """The line protocol line for one state, or None when the state is skipped or filtered out."""
        raw_state = state.state
        if raw_state in SKIPPED_STATES:
            return None
        entity_id = state.entity_id
        attributes = state.attributes
        unit = attributes.get(self._plan_attr)
        plan_key = (entity_id, type(unit), unit)  # the type too: 0, 0.0 and False are equal keys, not one unit
        try:
            plan = self._plans.get(plan_key)
        except TypeError:  # an unhashable unit (a list): rare, no cache
            plan, plan_key = None, None  # type: ignore[assignment]
        if plan is None:
            plan = self._plan(entity_id, attributes)
            if plan_key is not None:
                if len(self._plans) >= _CACHE_LIMIT:
                    self._plans.clear()
                self._plans[plan_key] = plan
        if not plan.accepted:
            return None

        shape, state_part = self._state_part(raw_state)
        memo = self._attr_memo.get(entity_id)
        if (
            memo is not None
            and memo[2] is plan
            and memo[1] == shape
            and (memo[0] is attributes or (memo[3] and memo[0] == attributes and _same_types(memo[0], attributes)))
        ):
            attr_part = memo[4]
        else:
            attr_part = self._attribute_part(plan, shape, attributes)
            if memo is None and len(self._attr_memo) >= _CACHE_LIMIT:
                self._attr_memo.clear()
            # Equal dicts render alike only when every value is a plain scalar of the same type (1 == True == 1.0,
            # but not as text), so the types are compared too.
            simple = all(type(v) in _SCALARS for v in attributes.values())
            self._attr_memo[entity_id] = (attributes, shape, plan, simple, attr_part)
        if not attr_part:
            if not state_part:
                return None
            field_part = state_part
        else:
            field_part = f"{state_part},{attr_part}" if state_part else attr_part
        series = plan.series
        if series is None:
            series = self._encoder.series_key(plan.measurement, self._tags_for(plan, entity_id, attributes))
            if series is None:
                return None
        return f"{series} {field_part} {state.last_updated_ns}"

    def _tags_for(self, plan: _Plan, entity_id: str, attributes: dict[str, Any]) -> dict[str, str]:
        tags = {"domain": plan.domain, "entity_id": plan.object_id}
        for key in self._tags_attributes:
            if key in attributes:
                tags[key] = str(attributes[key])
        tags.update(self._global_tags)
        if self._extra_tags is not None:
            tags.update(self._extra_tags(entity_id))
        return tags


def _same_types(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal attribute dicts whose values also have the same types (called only after ``old == new``)."""
    return all(type(value) is type(old[key]) for key, value in new.items())
