"""Configuration: typed settings from defaults < TOML file < systemd credentials < environment.

* Environment variables: ``HOMEIQ_<SECTION>__<SETTING>``, e.g. ``HOMEIQ_INFLUXDB__URL``.
* TOML file: ``--config PATH``, else ``$HOMEIQ_CONFIG``, else ``$CONFIGURATION_DIRECTORY/homeiq.toml``
  (systemd's ConfigurationDirectory=), else ``/etc/homeiq/homeiq.toml`` when present.
* Secrets: any secret can be set as above, or put in a file named after the credential (see
  ``CREDENTIAL_FILES``) under ``$CREDENTIALS_DIRECTORY`` (systemd's LoadCredential=), else under
  ``credentials/`` beside the config file in use when this user can read it (root, for the installed service's
  ``/etc/homeiq/credentials``).
* State directory: ``state_dir`` as set, else ``$STATE_DIRECTORY`` (systemd's StateDirectory=), else the
  service's ``/var/lib/homeiq`` when it exists and this user can read it (root, or a member of group homeiq),
  else ``/var/lib/homeiq`` for root, else ``$XDG_STATE_HOME/homeiq`` (``~/.local/state/homeiq``).
* Read-only commands load with ``read_only=True``: a Home Assistant URL without its token is then no error.

``config/homeiq.example.toml`` documents every setting with its default.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from homeiq_daemon.config.sections import (
    BatchSettings,
    HistorySettings,
    HomeAssistantSettings,
    HttpSettings,
    InfluxDBSettings,
    LogSettings,
    MappingSettings,
    MetadataSettings,
    PositiveSeconds,
    ReplaySettings,
    SpoolSettings,
)
from homeiq_daemon.config.switchbot import SwitchBotSettings
from homeiq_daemon.config.webhooks import CREDENTIALS_KEY, WebhookSettings, read_credentials
from homeiq_daemon.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/homeiq/homeiq.toml")
SERVICE_STATE_DIR = Path("/var/lib/homeiq")

# Credential file name under $CREDENTIALS_DIRECTORY -> dotted setting it fills.
CREDENTIAL_FILES: dict[str, str] = {
    "ha_token": "home_assistant.token",
    "influxdb_token": "influxdb.token",
    "influxdb_password": "influxdb.password",
    "http_token": "http.token",
    "switchbot_token": "switchbot.token",
    "switchbot_secret": "switchbot.secret",
    "switchbot_webhook_path_secret": "switchbot.webhook_path_secret",
}


def _default_state_dir() -> Path:
    systemd_dir = os.environ.get("STATE_DIRECTORY")
    if systemd_dir:
        return Path(systemd_dir.split(":")[0])
    if SERVICE_STATE_DIR.is_dir() and os.access(SERVICE_STATE_DIR, os.R_OK | os.X_OK):
        return SERVICE_STATE_DIR  # the installed service's: the CLI reads what the daemon writes
    if os.geteuid() == 0:
        return SERVICE_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "homeiq"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOMEIQ_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    state_dir: Path = Field(default_factory=_default_state_dir)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (unset it for the default, or give a directory)")
        return value
    shutdown_timeout_s: PositiveSeconds = 20.0
    """Upper bound for the flush at SIGTERM; keep it below systemd's TimeoutStopSec."""
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()
    influxdb: InfluxDBSettings = InfluxDBSettings()
    batch: BatchSettings = BatchSettings()
    spool: SpoolSettings = SpoolSettings()
    history: HistorySettings = HistorySettings()
    mapping: MappingSettings = MappingSettings()
    log: LogSettings = LogSettings()
    http: HttpSettings = HttpSettings()
    metadata: MetadataSettings = MetadataSettings()
    replay: ReplaySettings = ReplaySettings()
    webhooks: WebhookSettings = WebhookSettings()
    switchbot: SwitchBotSettings = SwitchBotSettings()

    @model_validator(mode="after")
    def _check_sources(self) -> Settings:
        if self.home_assistant.url and self.home_assistant.token is None and not _read_only.get():
            raise ValueError(
                "home_assistant.token is required when home_assistant.url is set "
                "(or put it in $CREDENTIALS_DIRECTORY/ha_token)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _CredentialsSource(settings_cls),
            _TomlSource(settings_cls),
        )

    @cached_property
    def history_db_path(self) -> Path:
        return self.state_dir / "history.db"

    @cached_property
    def store_db_path(self) -> Path:
        return self.state_dir / "homeiq.db"

    @property
    def uses_influxdb(self) -> bool:
        return self.influxdb.url is not None


# --- sources ------------------------------------------------------------------------------------------

_toml_path: Path | None = None
_read_only: ContextVar[bool] = ContextVar("homeiq_config_read_only", default=False)


def _set_nested(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        if _toml_path is None:
            return {}
        try:
            with _toml_path.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {_toml_path} does not exist") from None
        except PermissionError:
            raise ConfigError(f"config file {_toml_path} is not readable by this user") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {_toml_path}: {exc}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {_toml_path} is a directory, not a file") from None
        except OSError as exc:
            raise ConfigError(f"config file {_toml_path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {_toml_path} is not UTF-8 text") from None


class _CredentialsSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        directory = credentials_directory(_toml_path)
        found: dict[str, Any] = {}
        if directory is None:
            return found
        for name, dotted in CREDENTIAL_FILES.items():
            path = Path(directory) / name
            try:
                value = read_credential(path)
            except FileNotFoundError:
                continue
            if value:
                _set_nested(found, dotted, value)
        # webhook_<target or rule name>: that webhook target's secret (see webhooks/config.py)
        webhook_secrets = read_credentials(Path(directory), read_credential)
        if webhook_secrets:
            _set_nested(found, f"webhooks.{CREDENTIALS_KEY}", webhook_secrets)
        return found


def credentials_directory(config_path: Path | None) -> str | None:
    """systemd's $CREDENTIALS_DIRECTORY, else ``credentials/`` beside the config file when readable here."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        return directory
    if config_path is None:
        return None
    beside = config_path.parent / "credentials"
    if beside.is_dir() and os.access(beside, os.R_OK | os.X_OK):
        return str(beside)
    return None


def read_credential(path: Path) -> str:
    """A credential file's text, stripped. Raises FileNotFoundError when absent, ConfigError (naming the file,
    never its content) when unreadable or not UTF-8 text."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"credential {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"credential {path}: not UTF-8 text (invalid byte at offset {exc.start} of {len(raw)}); "
            "write the secret as plain text, e.g. with `printf %s`"
        ) from None


def resolve_config_path(explicit: str | Path | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("HOMEIQ_CONFIG")
    if env:
        return Path(env)
    systemd_dir = os.environ.get("CONFIGURATION_DIRECTORY")
    if systemd_dir:
        candidate = Path(systemd_dir.split(":")[0]) / "homeiq.toml"
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def _describe(error: dict[str, Any]) -> str:
    loc = ""
    for part in error.get("loc", ()):
        if part == "__root__":
            continue
        loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if message.startswith("@"):  # "@rules[2].target: …": a section's validator naming its sub-setting
        sub, _, message = message[1:].partition(": ")
        loc = f"{loc}.{sub}" if loc else sub
    kind = error.get("type")
    if kind == "extra_forbidden":
        message = "unknown setting (check the spelling against config/homeiq.example.toml)"
    elif kind == "missing":
        message = "required setting is missing"
    elif kind in ("float_parsing", "float_type"):
        message = "must be a number"
    return f"{loc}: {message}" if loc else message


def load_settings(config_path: str | Path | None = None, *, read_only: bool = False, **overrides: Any) -> Settings:
    """Load and validate settings. Raises ConfigError with one line that names the setting.

    ``read_only``: for commands that only read stored data (history, devices, …): the Home Assistant token
    is not required then."""
    global _toml_path  # noqa: PLW0603 - pydantic-settings instantiates sources itself; this is how we pass the path
    _toml_path = resolve_config_path(config_path)
    token = _read_only.set(read_only)
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # A whole section in one variable (HOMEIQ_HTTP=…) or a list (…__TAGS_ATTRIBUTES=…) must be JSON.
        found = re.search(r'field "([^"]+)"', str(exc))
        prefix = f"HOMEIQ_{found.group(1).upper()}" if found else "HOMEIQ_"
        exact = [k for k in os.environ if k.upper() == prefix]
        name = " or ".join(exact or sorted(k for k in os.environ if k.upper().startswith(prefix + "__"))) or prefix
        raise ConfigError(
            f"{name}: not valid JSON (a section or list set in one variable must be JSON, e.g. "
            f"HOMEIQ_MAPPING__TAGS_ATTRIBUTES='[\"friendly_name\"]'; or set HOMEIQ_<SECTION>__<SETTING>)"
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = f" (in {_toml_path})" if _toml_path else ""
        more = len(exc.errors()) - 1
        suffix = f" [and {more} more]" if more else ""
        raise ConfigError(f"{_describe(dict(first))}{suffix}{where}") from None
    finally:
        _toml_path = None
        _read_only.reset(token)


def redacted_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets shown as '**********' (set) or None (unset)."""
    return settings.model_dump(mode="json")
