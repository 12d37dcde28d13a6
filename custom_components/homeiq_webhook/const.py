"""Names shared by the YAML setup and the config flow."""

DOMAIN = "homeiq_webhook"
DEFAULT_EVENT_TYPE = "homeiq_webhook"

CONF_WEBHOOK_ID = "webhook_id"
CONF_SECRET = "secret"  # noqa: S105 - a configuration key
CONF_EVENT_TYPE = "event_type"
CONF_LOCAL_ONLY = "local_only"
CONF_TOLERANCE = "tolerance_s"
