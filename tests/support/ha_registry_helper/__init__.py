"""Test-only Home Assistant integration: creates and removes devices (with one registry entity each) on
demand, which HA's WebSocket API cannot do by itself. Loaded into the real HA the registry tests start."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

DOMAIN = "homeiq_registry_helper"


async def _entry(hass: HomeAssistant) -> ConfigEntry:
    entries = hass.config_entries.async_entries(DOMAIN)
    if entries:
        return entries[0]
    entry = ConfigEntry(version=1, minor_version=1, domain=DOMAIN, title="registry helper", data={}, source="user")
    await hass.config_entries.async_add(entry)
    return entry


async def async_setup(hass: HomeAssistant, config: dict[str, Any]) -> bool:
    async def create_device(call: ServiceCall) -> None:
        entry = await _entry(hass)
        key = str(call.data["key"])
        device = dr.async_get(hass).async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, key)}, name=str(call.data.get("name", key)),
            manufacturer="homeiq", model="registry-test",
        )
        er.async_get(hass).async_get_or_create(
            "sensor", DOMAIN, key, suggested_object_id=key, device_id=device.id, config_entry=entry,
            original_name=f"{key} reading",
        )

    async def remove_device(call: ServiceCall) -> None:
        registry = dr.async_get(hass)
        device = registry.async_get_device(identifiers={(DOMAIN, str(call.data["key"]))})
        if device is not None:
            registry.async_remove_device(device.id)

    hass.services.async_register(DOMAIN, "create_device", create_device)
    hass.services.async_register(DOMAIN, "remove_device", remove_device)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    return True
