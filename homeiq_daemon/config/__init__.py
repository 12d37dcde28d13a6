"""Configuration: the root ``Settings`` and how it is loaded (settings.py), one module per group of sections.

Sections are plain pydantic models with no imports from the feature packages; each feature is handed only its
own section (``settings.influxdb`` to the InfluxDB writer, ``settings.switchbot`` to the SwitchBot source, …).
"""

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.config.sections import (
    MIN_HTTP_TOKEN_CHARS,
    BatchSettings,
    EntityCustomization,
    EntityFilterSettings,
    HistorySettings,
    HomeAssistantSettings,
    HttpSettings,
    InfluxDBSettings,
    LogSettings,
    MappingSettings,
    MetadataSettings,
    ReplaySettings,
    SpoolSettings,
)
from homeiq_daemon.config.settings import (
    CREDENTIAL_FILES,
    DEFAULT_CONFIG_PATH,
    SERVICE_STATE_DIR,
    Settings,
    credentials_directory,
    load_settings,
    read_credential,
    redacted_dict,
    resolve_config_path,
)
from homeiq_daemon.config.switchbot import SwitchBotSettings
from homeiq_daemon.config.webhooks import WebhookRule, WebhookSettings, WebhookTarget

__all__ = [
    "CREDENTIAL_FILES",
    "DEFAULT_CONFIG_PATH",
    "MIN_HTTP_TOKEN_CHARS",
    "SERVICE_STATE_DIR",
    "BackfillSettings",
    "BatchSettings",
    "EntityCustomization",
    "EntityFilterSettings",
    "HistorySettings",
    "HomeAssistantSettings",
    "HttpSettings",
    "InfluxDBSettings",
    "LogSettings",
    "MappingSettings",
    "MetadataSettings",
    "ReplaySettings",
    "Settings",
    "SpoolSettings",
    "SwitchBotSettings",
    "WebhookRule",
    "WebhookSettings",
    "WebhookTarget",
    "credentials_directory",
    "load_settings",
    "read_credential",
    "redacted_dict",
    "resolve_config_path",
]
