"""Entity rows as the API shows them: the store's copy overlaid with the pipeline's last accepted state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeiq_daemon.model import EntityState


def overlay(row: dict[str, Any], live: EntityState | None, *, attributes: bool) -> dict[str, Any]:
    """The store's copy is up to one flush interval old; the pipeline's last accepted state (a dict lookup,
    no SQL) is never older, so it wins."""
    if live is not None:
        row["state"] = live.state
        row["last_changed"] = live.last_changed
        row["last_updated"] = live.last_updated
    if attributes:
        row["attributes"] = live.attributes if live is not None else None
    return row


def live_only(live: EntityState) -> dict[str, Any]:
    """An entity the pipeline has seen but the store has not written yet."""
    attrs: Mapping[str, Any] = live.attributes
    return {
        "entity_id": live.entity_id,
        "domain": live.domain,
        "name": attrs.get("friendly_name"),
        "in_registry": None,
        "device_id": None,
        "area_id": None,
        "state": live.state,
        "last_changed": live.last_changed,
        "last_updated": live.last_updated,
        "device_class": attrs.get("device_class"),
        "unit_of_measurement": attrs.get("unit_of_measurement"),
        "state_class": attrs.get("state_class"),
    }
