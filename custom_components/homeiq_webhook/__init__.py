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
A delivery retried by the daemon carries the same webhook-id; a repeat of an id seen within the tolerance
window (``tolerance_s``, at most one hour) is answered 200 and not fired again. Ids are remembered until
their window ends (after that a replay fails on its timestamp), and are kept in HA's storage
(``.storage/homeiq_webhook.seen``) before the event fires, so a restart of HA does not open a replay window.
Nothing this integration logs contains the webhook id, which is the webhook's only credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http import HTTPStatus
from typing import Any

import voluptuous as vol
from aiohttp.web import Request, Response
from homeassistant.components import webhook
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_EVENT_TYPE,
    CONF_LOCAL_ONLY,
    CONF_SECRET,
    CONF_TOLERANCE,
    CONF_WEBHOOK_ID,
    DEFAULT_EVENT_TYPE,
    DOMAIN,
    hook_key,
)
from .replay import SeenDeliveries, WindowFull
from .signature import DEFAULT_TOLERANCE_S, MAX_TOLERANCE_S, InvalidDelivery, InvalidSecret, parse_secrets, verify

_LOGGER = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
STORAGE_KEY = "homeiq_webhook.seen"
STORAGE_VERSION = 1

HOOK_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_WEBHOOK_ID): cv.string,
        vol.Required(CONF_SECRET): cv.string,
        vol.Optional(CONF_EVENT_TYPE, default=DEFAULT_EVENT_TYPE): cv.string,
        vol.Optional(CONF_LOCAL_ONLY, default=True): cv.boolean,
        vol.Optional(CONF_TOLERANCE, default=DEFAULT_TOLERANCE_S): vol.All(
            vol.Coerce(int), vol.Range(min=1, max=MAX_TOLERANCE_S)
        ),
    }
)
CONFIG_SCHEMA = vol.Schema({DOMAIN: vol.All(cv.ensure_list, [HOOK_SCHEMA])}, extra=vol.ALLOW_EXTRA)


class _SeenStore:
    """Every hook's remembered delivery ids (YAML and config entries alike), in one HA storage file."""

    def __init__(self, hass: HomeAssistant) -> None:
        self._store: Store[dict[str, Any]] = Store(hass, STORAGE_VERSION, STORAGE_KEY)
        self._saved: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self.hooks: dict[str, SeenDeliveries] = {}

    async def hook(self, key: str) -> SeenDeliveries:
        async with self._lock:
            if self._saved is None:
                data = await self._store.async_load()
                hooks = data.get("hooks") if isinstance(data, dict) else None
                self._saved = hooks if isinstance(hooks, dict) else {}
            seen = self.hooks.get(key)
            if seen is None:
                seen = self.hooks[key] = SeenDeliveries()
                items = self._saved.get(key)
                seen.load(items if isinstance(items, list) else [], time.time())
            return seen

    async def save(self) -> None:
        await self._store.async_save({"hooks": {key: seen.dump() for key, seen in self.hooks.items()}})


class _Hook:
    """One registered webhook: its secrets, event type, and the ids it has fired within their window."""

    def __init__(  # noqa: PLR0917 - one call site, each argument named there
        self, keys: list[bytes], event_type: str, tolerance_s: int, key: str, store: _SeenStore, seen: SeenDeliveries
    ) -> None:
        self.keys = keys
        self.event_type = event_type
        self.tolerance_s = min(tolerance_s, MAX_TOLERANCE_S)  # a config entry made before the maximum existed
        self.key = key
        self._store = store
        self._seen = seen

    async def handle(self, hass: HomeAssistant, webhook_id: str, request: Request) -> Response:
        try:
            return await self._handle(hass, request)
        except Exception:  # HA would log the webhook id with an escaping error; log without it instead
            _LOGGER.exception("homeiq_webhook %s: delivery failed", self.key)
            return Response(status=HTTPStatus.INTERNAL_SERVER_ERROR, text="internal error")

    async def _handle(self, hass: HomeAssistant, request: Request) -> Response:
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return Response(status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE, text="body too large")
        now = time.time()
        try:
            msg_id = verify(self.keys, request.headers, body, now, self.tolerance_s)
        except InvalidDelivery as err:
            _LOGGER.warning("homeiq_webhook %s: refused a delivery from %s: %s", self.key, request.remote, err)
            return Response(status=HTTPStatus.UNAUTHORIZED, text=f"invalid delivery: {err}")
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return Response(status=HTTPStatus.BAD_REQUEST, text="body is not a JSON object")
        timestamp = int(request.headers["webhook-timestamp"])  # verify() checked it: 1 to 12 ASCII digits
        try:
            first = self._seen.first_time(msg_id, timestamp, self.tolerance_s, now)
        except WindowFull as err:
            _LOGGER.warning("homeiq_webhook %s: %s; asking the sender to retry", self.key, err)
            return Response(status=HTTPStatus.SERVICE_UNAVAILABLE, text="busy", headers={"Retry-After": "60"})
        if not first:
            return Response(status=HTTPStatus.OK, text="duplicate")
        try:  # on disk before the event fires: a restart of HA must not make a replay look new
            await self._store.save()
        except OSError as err:
            _LOGGER.warning("homeiq_webhook %s: could not store the delivery id: %s", self.key, err)
        hass.bus.async_fire(self.event_type, {**payload, "delivery_id": msg_id})
        return Response(status=HTTPStatus.OK, text="ok")


async def _register(hass: HomeAssistant, options: dict[str, Any]) -> None:
    """Raises InvalidSecret; ValueError when the webhook id is taken."""
    keys = parse_secrets(options[CONF_SECRET])
    store: _SeenStore = hass.data.setdefault(DOMAIN, {}).setdefault("seen", _SeenStore(hass))
    key = hook_key(options[CONF_WEBHOOK_ID])
    hook = _Hook(
        keys,
        options.get(CONF_EVENT_TYPE, DEFAULT_EVENT_TYPE),
        int(options.get(CONF_TOLERANCE, DEFAULT_TOLERANCE_S)),
        key,
        store,
        await store.hook(key),
    )
    webhook.async_register(
        hass,
        DOMAIN,
        f"homeiq verified webhook {key}",
        options[CONF_WEBHOOK_ID],
        hook.handle,
        local_only=bool(options.get(CONF_LOCAL_ONLY, True)),
    )


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    for entry in config.get(DOMAIN, []) or []:
        try:
            await _register(hass, entry)
        except InvalidSecret as err:
            _LOGGER.error("homeiq_webhook: %s", err)
            return False
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """A webhook added through the config flow (Settings -> Devices & services)."""
    try:
        await _register(hass, dict(entry.data))
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
