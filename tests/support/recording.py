"""Realistic Home Assistant traffic: state_changed frames as HA sends them over the WebSocket.

Deterministic (seeded) so the example recording, the tests and the benchmark see the same mix: climate
sensors with units, power meters, binary sensors, lights with colour attributes, covers, a person, the sun,
a weather entity with a forecast-like list, and a media player with long string attributes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

ROOMS = ["living_room", "kitchen", "bedroom", "office", "bathroom", "hallway", "garage", "kids_room"]


@dataclass
class Entity:
    entity_id: str
    make_state: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    state: str = "unknown"
    last_changed: str = ""
    last_updated: str = ""


def _entities(rng: random.Random) -> list[Entity]:
    out: list[Entity] = []
    for room in ROOMS:
        title = room.replace("_", " ").title()
        out.append(Entity(f"sensor.{room}_temperature", lambda r: f"{r.uniform(17, 25):.1f}",
                          {"state_class": "measurement", "unit_of_measurement": "°C", "device_class": "temperature",
                           "friendly_name": f"{title} Temperature"}))
        out.append(Entity(f"sensor.{room}_humidity", lambda r: f"{r.uniform(35, 65):.0f}",
                          {"state_class": "measurement", "unit_of_measurement": "%", "device_class": "humidity",
                           "friendly_name": f"{title} Humidity"}))
        out.append(Entity(f"binary_sensor.{room}_motion", lambda r: r.choice(["on", "off", "off"]),
                          {"device_class": "motion", "friendly_name": f"{title} Motion"}))
        out.append(Entity(f"light.{room}_ceiling", lambda r: r.choice(["on", "off"]),
                          {"supported_color_modes": ["color_temp", "hs"], "color_mode": "color_temp",
                           "brightness": 180, "color_temp_kelvin": 2700, "hs_color": [30.0, 60.5],
                           "rgb_color": [255, 167, 87], "xy_color": [0.526, 0.387],
                           "friendly_name": f"{title} Ceiling", "supported_features": 40}))
    for plug in ("washing_machine", "dishwasher", "tv", "fridge", "server_rack"):
        out.append(Entity(f"sensor.{plug}_power", lambda r: f"{r.uniform(0, 2200):.2f}",
                          {"state_class": "measurement", "unit_of_measurement": "W", "device_class": "power",
                           "friendly_name": f"{plug.replace('_', ' ').title()} Power"}))
        out.append(Entity(f"sensor.{plug}_energy", lambda r: f"{r.uniform(100, 900):.3f}",
                          {"state_class": "total_increasing", "unit_of_measurement": "kWh",
                           "device_class": "energy", "friendly_name": f"{plug.replace('_', ' ').title()} Energy"}))
        out.append(Entity(f"switch.{plug}_plug", lambda r: r.choice(["on", "off"]),
                          {"friendly_name": f"{plug.replace('_', ' ').title()} Plug"}))
    out.append(Entity("cover.garage_door", lambda r: r.choice(["open", "closed", "opening", "closing"]),
                      {"current_position": 0, "device_class": "garage", "friendly_name": "Garage Door",
                       "supported_features": 15}))
    out.append(Entity("person.alex", lambda r: r.choice(["home", "not_home", "work"]),
                      {"editable": True, "id": "alex", "latitude": 52.3731, "longitude": 4.8922,
                       "gps_accuracy": 12, "source": "device_tracker.alex_phone", "user_id": "4f1c2d",
                       "device_trackers": ["device_tracker.alex_phone"], "friendly_name": "Alex"}))
    out.append(Entity("sun.sun", lambda r: r.choice(["above_horizon", "below_horizon"]),
                      {"next_dawn": "2026-11-24T06:51:12.123456+00:00", "next_dusk": "2026-11-23T16:58:40.5+00:00",
                       "next_midnight": "2026-11-23T23:54:31+00:00", "next_noon": "2026-11-24T11:54:33+00:00",
                       "next_rising": "2026-11-24T07:33:02+00:00", "next_setting": "2026-11-23T16:16:51+00:00",
                       "elevation": 12.4, "azimuth": 201.7, "rising": False, "friendly_name": "Sun"}))
    out.append(Entity("weather.home", lambda r: r.choice(["cloudy", "rainy", "sunny", "partlycloudy"]),
                      {"temperature": 7.2, "dew_point": 3.1, "temperature_unit": "°C", "humidity": 81,
                       "cloud_coverage": 94.5, "pressure": 1012.3, "pressure_unit": "hPa", "wind_bearing": 221.4,
                       "wind_speed": 18.4, "wind_speed_unit": "km/h", "visibility_unit": "km",
                       "precipitation_unit": "mm", "attribution": "Weather forecast from met.no, delivered by the "
                       "Norwegian Meteorological Institute.", "friendly_name": "Home", "supported_features": 3}))
    out.append(Entity("media_player.living_room_tv", lambda r: r.choice(["playing", "paused", "idle", "off"]),
                      {"volume_level": 0.35, "is_volume_muted": False, "media_content_type": "tvshow",
                       "media_title": 'Episode 4: "The Long Night" — part 2', "app_name": "Netflix",
                       "source_list": ["HDMI 1", "HDMI 2", "Netflix", "YouTube"], "friendly_name": "Living Room TV",
                       "supported_features": 24509}))
    out.append(Entity("climate.hallway", lambda r: r.choice(["heat", "off", "auto"]),
                      {"hvac_modes": ["off", "heat", "auto"], "min_temp": 7, "max_temp": 35,
                       "current_temperature": 20.5, "temperature": 21, "hvac_action": "heating",
                       "preset_mode": "comfort", "preset_modes": ["eco", "comfort", "away"],
                       "friendly_name": "Hallway Thermostat", "supported_features": 401}))
    out.append(Entity("sensor.outdoor_battery", lambda r: f"{r.randint(1, 100)}",
                      {"unit_of_measurement": "%", "device_class": "battery", "friendly_name": "Outdoor Battery"}))
    out.append(Entity("sensor.internet_speed", lambda r: r.choice(["unavailable", f"{r.uniform(50, 500):.1f}"]),
                      {"unit_of_measurement": "Mbit/s", "friendly_name": "Internet Speed"}))
    del rng
    return out


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds")


def _state_obj(e: Entity, ctx: str) -> dict[str, Any]:
    return {"entity_id": e.entity_id, "state": e.state, "attributes": dict(e.attributes),
            "last_changed": e.last_changed, "last_reported": e.last_updated, "last_updated": e.last_updated,
            "context": {"id": ctx, "parent_id": None, "user_id": None}}


def generate_events(count: int, *, seed: int = 7, start: datetime | None = None,
                    rate_per_s: float = 20.0, subscription_id: int = 2) -> list[dict[str, Any]]:
    """``count`` WebSocket ``event`` messages (dicts), each a state_changed with old and new state."""
    rng = random.Random(seed)
    entities = _entities(rng)
    now = start or datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    for e in entities:
        e.state = e.make_state(rng)
        e.last_changed = e.last_updated = _iso(now - timedelta(minutes=5))
    messages = []
    step = timedelta(seconds=1 / rate_per_s)
    for i in range(count):
        now += step
        e = rng.choice(entities)
        old = _state_obj(e, f"01HQ{i:022d}")
        new_state = e.make_state(rng)
        stamp = _iso(now)
        if new_state != e.state:
            e.last_changed = stamp
        e.state = new_state
        e.last_updated = stamp
        if "brightness" in e.attributes:
            e.attributes["brightness"] = rng.randint(1, 255)
        if "current_temperature" in e.attributes:
            e.attributes["current_temperature"] = round(rng.uniform(18, 23), 1)
        ctx = f"01HR{i:022d}"
        messages.append({
            "id": subscription_id, "type": "event",
            "event": {"event_type": "state_changed",
                      "data": {"entity_id": e.entity_id, "old_state": old, "new_state": _state_obj(e, ctx)},
                      "origin": "LOCAL", "time_fired": stamp,
                      "context": {"id": ctx, "parent_id": None, "user_id": None}},
        })
    return messages


def generate_frames(count: int, **kwargs: Any) -> list[bytes]:
    """The same events as raw WebSocket text frames (JSON bytes), one message per frame."""
    return [orjson.dumps(m) for m in generate_events(count, **kwargs)]


def current_states(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last new_state per entity in a list of event messages (what get_states would return)."""
    states: dict[str, dict[str, Any]] = {}
    for m in messages:
        data = m["event"]["data"]
        states[data["entity_id"]] = data["new_state"]
    return states
