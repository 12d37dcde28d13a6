"""Names shared by the YAML setup and the config flow."""

import hashlib

DOMAIN = "homeiq_webhook"
DEFAULT_EVENT_TYPE = "homeiq_webhook"

CONF_WEBHOOK_ID = "webhook_id"
CONF_SECRET = "secret"  # noqa: S105 - a configuration key
CONF_EVENT_TYPE = "event_type"
CONF_LOCAL_ONLY = "local_only"
CONF_TOLERANCE = "tolerance_s"


def hook_key(webhook_id: str) -> str:
    """How a webhook is named in storage, titles and logs: a digest, never the id (its only credential)."""
    return hashlib.sha256(webhook_id.encode()).hexdigest()[:12]
