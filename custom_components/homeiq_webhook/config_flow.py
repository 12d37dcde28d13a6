"""Config flow for homeiq verified webhooks: one config entry per webhook, added from Settings -> Devices &
services. A webhook configured in YAML (``homeiq_webhook:``) keeps working beside the entries."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant import config_entries
from homeassistant.components import webhook
from homeassistant.data_entry_flow import FlowResult

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
from .signature import DEFAULT_TOLERANCE_S, MAX_TOLERANCE_S, InvalidSecret, parse_secrets


def _schema(defaults: dict[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_WEBHOOK_ID, default=defaults[CONF_WEBHOOK_ID]): str,
            vol.Required(CONF_SECRET, default=defaults.get(CONF_SECRET, "")): str,
            vol.Optional(CONF_EVENT_TYPE, default=defaults.get(CONF_EVENT_TYPE, DEFAULT_EVENT_TYPE)): str,
            vol.Optional(CONF_LOCAL_ONLY, default=defaults.get(CONF_LOCAL_ONLY, True)): bool,
            vol.Optional(CONF_TOLERANCE, default=defaults.get(CONF_TOLERANCE, DEFAULT_TOLERANCE_S)): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=MAX_TOLERANCE_S)
            ),
        }
    )


class HomeiqWebhookConfigFlow(config_entries.ConfigFlow, domain=DOMAIN):
    """Asks for the webhook id (a fresh random one is offered) and the daemon's whsec_ secret."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            webhook_id = user_input[CONF_WEBHOOK_ID].strip()
            try:
                parse_secrets(user_input[CONF_SECRET])
            except InvalidSecret:
                errors[CONF_SECRET] = "invalid_secret"
            if len(webhook_id) < 16:
                errors[CONF_WEBHOOK_ID] = "short_webhook_id"  # the id is the URL's only secret part
            if not errors:
                await self.async_set_unique_id(webhook_id)
                self._abort_if_unique_id_configured()
                data = {**user_input, CONF_WEBHOOK_ID: webhook_id}
                title = f"{data[CONF_EVENT_TYPE]} (#{hook_key(webhook_id)[:6]})"  # never a part of the id
                return self.async_create_entry(title=title, data=data)
        defaults = {CONF_WEBHOOK_ID: webhook.async_generate_id(), **(user_input or {})}
        return self.async_show_form(step_id="user", data_schema=_schema(defaults), errors=errors)
