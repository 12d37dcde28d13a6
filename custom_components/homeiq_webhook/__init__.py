"""homeiq verified webhooks: receive the homeiq daemon's signed deliveries and fire them as HA events.

Home Assistant's own webhook trigger cannot check a signature (automations never see the headers or the
raw body), so this integration registers the webhook itself, verifies the Standard Webhooks signature and
timestamp, answers 401 to anything forged or stale, and fires an event that automations trigger on.
Add a webhook from Settings -> Devices & services -> Add integration -> "homeiq verified webhooks" (a config
entry per webhook), or in YAML::

    # configuration.yaml
    homeiq_webhook:
      - webhook_id: !secret homeiq_webhook_id        # the <id> in http://HA:8123/api/webhook/<id>
        secret: !secret homeiq_webhook_secret        # whsec_...; "whsec_new whsec_old" while rotating
        # event_type: homeiq_webhook                 # the default
        # local_only: true                           # the default: refuse requests from the internet

    # an automation
    trigger:
      - platform: event
        event_type: homeiq_webhook
        event_data: {rule: front_door_open}

The event data is the delivery's JSON (rule, entity_id, old_state, new_state, event_time, delivery_id, ...).
A delivery retried by the daemon carries the same webhook-id; a repeat of a recently seen id is answered
200 and not fired again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from http import HTTPStatus
from typing import Any

import voluptuous as vol
from aiohttp.web import Request, Response
from homeassistant.components import webhook
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_EVENT_TYPE,
    CONF_LOCAL_ONLY,
    CONF_SECRET,
    CONF_TOLERANCE,
    CONF_WEBHOOK_ID,
    DEFAULT_EVENT_TYPE,
    DOMAIN,
)
from .signature import DEFAULT_TOLERANCE_S, InvalidDelivery, InvalidSecret, parse_secrets, verify

_LOGGER = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
REMEMBERED_IDS = 1024

HOOK_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_WEBHOOK_ID): cv.string,
        vol.Required(CONF_SECRET): cv.string,
        vol.Optional(CONF_EVENT_TYPE, default=DEFAULT_EVENT_TYPE): cv.string,
        vol.Optional(CONF_LOCAL_ONLY, default=True): cv.boolean,
        vol.Optional(CONF_TOLERANCE, default=DEFAULT_TOLERANCE_S): vol.All(vol.Coerce(int), vol.Range(min=1)),
    }
)
CONFIG_SCHEMA = vol.Schema({DOMAIN: vol.All(cv.ensure_list, [HOOK_SCHEMA])}, extra=vol.ALLOW_EXTRA)


class _Hook:
    """One registered webhook: its secrets, event type, and the ids it has recently fired."""

    def __init__(self, keys: list[bytes], event_type: str, tolerance_s: int) -> None:
        self.keys = keys
        self.event_type = event_type
        self.tolerance_s = tolerance_s
        self.seen: OrderedDict[str, None] = OrderedDict()

    def remember(self, msg_id: str) -> bool:
        """False when this id was already fired (a retry whose first answer got lost)."""
        if msg_id in self.seen:
            self.seen.move_to_end(msg_id)
            return False
        self.seen[msg_id] = None
        while len(self.seen) > REMEMBERED_IDS:
            self.seen.popitem(last=False)
        return True

    async def handle(self, hass: HomeAssistant, webhook_id: str, request: Request) -> Response:
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return Response(status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE, text="body too large")
        try:
            msg_id = verify(self.keys, request.headers, body, time.time(), self.tolerance_s)
        except InvalidDelivery as err:
            # The webhook id is a secret too: log only its first characters.
            _LOGGER.warning("Refused a delivery to webhook %s… from %s: %s", webhook_id[:4], request.remote, err)
            return Response(status=HTTPStatus.UNAUTHORIZED, text=f"invalid delivery: {err}")
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return Response(status=HTTPStatus.BAD_REQUEST, text="body is not a JSON object")
        if not self.remember(msg_id):
            return Response(status=HTTPStatus.OK, text="duplicate")
        hass.bus.async_fire(self.event_type, {**payload, "delivery_id": msg_id})
        return Response(status=HTTPStatus.OK, text="ok")


def _register(hass: HomeAssistant, options: dict[str, Any]) -> None:
    """Raises InvalidSecret; ValueError when the webhook id is taken."""
    keys = parse_secrets(options[CONF_SECRET])
    hook = _Hook(
        keys, options.get(CONF_EVENT_TYPE, DEFAULT_EVENT_TYPE), int(options.get(CONF_TOLERANCE, DEFAULT_TOLERANCE_S))
    )
    webhook.async_register(
        hass,
        DOMAIN,
        "homeiq verified webhook",
        options[CONF_WEBHOOK_ID],
        hook.handle,
        local_only=bool(options.get(CONF_LOCAL_ONLY, True)),
    )


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    for entry in config.get(DOMAIN, []) or []:
        try:
            _register(hass, entry)
        except InvalidSecret as err:
            _LOGGER.error("homeiq_webhook: %s", err)
            return False
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """A webhook added through the config flow (Settings -> Devices & services)."""
    try:
        _register(hass, dict(entry.data))
    except InvalidSecret as err:
        _LOGGER.error("homeiq_webhook %s: %s", entry.title, err)
        return False
    except ValueError:  # the same id is configured in YAML too
        _LOGGER.error("homeiq_webhook %s: webhook id already registered (in YAML?)", entry.title)
        return False
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    webhook.async_unregister(hass, entry.data[CONF_WEBHOOK_ID])
    return True
