"""Benchmark-only Home Assistant integration: changes ``entities`` sensor states at ``rate`` per second from
inside HA's own event loop, so HA's CPU for producing them is the same with or without a consumer attached.

    homeiq_bench_load:
      entities: 500
      rate: 200
"""

from __future__ import annotations

import random
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.event import async_track_time_interval

DOMAIN = "homeiq_bench_load"
TICKS_PER_S = 50


async def async_setup(hass: HomeAssistant, config: dict[str, Any]) -> bool:
    conf = config.get(DOMAIN) or {}
    entities = int(conf.get("entities", 500))
    rate = float(conf.get("rate", 200))
    rng = random.Random(11)
    ids = [f"sensor.bench_load_{i:05d}" for i in range(entities)]
    kinds = ("power", "temperature", "humidity", "energy")
    units = {"power": "W", "temperature": "°C", "humidity": "%", "energy": "kWh"}
    attrs = [
        {"state_class": "measurement", "unit_of_measurement": units[kinds[i % 4]], "device_class": kinds[i % 4],
         "friendly_name": f"Bench load {i}"}
        for i in range(entities)
    ]  # fmt: skip
    for i, entity_id in enumerate(ids):
        hass.states.async_set(entity_id, "0", attrs[i])
    owed = [0.0]

    def tick(_now: Any) -> None:
        owed[0] += rate / TICKS_PER_S
        while owed[0] >= 1:
            i = rng.randrange(entities)
            hass.states.async_set(ids[i], f"{rng.uniform(0, 2000):.1f}", attrs[i])
            owed[0] -= 1

    from datetime import timedelta

    async_track_time_interval(hass, tick, timedelta(seconds=1 / TICKS_PER_S))
    return True
