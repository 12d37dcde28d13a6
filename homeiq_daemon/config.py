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

import fnmatch
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from homeiq_daemon.errors import ConfigError
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.sources.homeassistant.backfill_config import BackfillSettings
from homeiq_daemon.sources.switchbot.config import SwitchBotSettings
from homeiq_daemon.webhooks.config import CREDENTIALS_KEY, WebhookSettings, read_credentials

DEFAULT_CONFIG_PATH = Path("/etc/homeiq/homeiq.toml")
SERVICE_STATE_DIR = Path("/var/lib/homeiq")
MiB = 1024 * 1024

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeAssistantSettings(_Section):
    url: str | None = None
    """Base URL of Home Assistant (http://host:8123) or its WebSocket URL (ws://host:8123/api/websocket)."""
    token: SecretStr | None = None
    verify_ssl: bool = True
    connect_timeout_s: PositiveSeconds = 15.0
    handshake_timeout_s: PositiveSeconds = 10.0
    """Longest wait for each step after the TCP connect: the WebSocket upgrade answer, ``auth_required``,
    ``auth_ok``. A peer that accepts the connection and then says nothing is dropped, and the normal
    reconnect backoff follows."""
    heartbeat_interval_s: PositiveSeconds = 20.0
    heartbeat_timeout_s: PositiveSeconds = 10.0
    reconnect_initial_s: PositiveSeconds = 1.0
    reconnect_max_s: PositiveSeconds = 60.0
    reconnect_recent_max_s: PositiveSeconds = 2.0
    """Longest wait between reconnect attempts while the last good connection ended less than
    ``reconnect_recent_window_s`` ago (an HA restart is back within seconds to a minute)."""
    reconnect_recent_window_s: float = Field(default=300.0, ge=0, le=86_400)
    backfill: BackfillSettings = BackfillSettings()
    max_message_bytes: int = Field(default=64 * MiB, ge=MiB, le=1024 * MiB)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError("must look like http://homeassistant.local:8123 (or ws://…/api/websocket)")
        return value

    @field_serializer("url")
    def _show_url(self, url: str | None) -> str | None:
        return None if url is None else redact_url(url)

    @property
    def websocket_url(self) -> str:
        assert self.url is not None
        parts = urlsplit(self.url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/")
        if not path.endswith("/api/websocket"):
            path = path + "/api/websocket"
        return urlunsplit((scheme, parts.netloc, path, "", ""))


class InfluxDBSettings(_Section):
    url: str | None = None
    """InfluxDB base URL, e.g. http://localhost:8086. Unset: points go to the embedded history store."""
    api_version: Literal[1, 2] = 1
    database: str = Field(default="home_assistant", min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    create_database: bool = True
    gzip: bool | None = None
    """Compress request bodies. Unset: on, except for an InfluxDB on this machine (loopback), where
    compressing only costs CPU."""
    verify_ssl: bool = True
    timeout_s: PositiveSeconds = 10.0
    write_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts for one batch before InfluxDB is considered down and batches go to the spool."""
    retry_max_s: PositiveSeconds = 30.0
    """Longest wait between attempts to reach InfluxDB again while it is down."""
    probe_max_s: PositiveSeconds = 4.0
    """While InfluxDB is down, it is probed (one small write) at least this often, so its recovery is noticed
    within about this long."""

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip() in ("1", "2") else value  # HA writes "2"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://localhost:8086")
        return value.rstrip("/")

    @field_serializer("url")
    def _show_url(self, url: str | None) -> str | None:
        return None if url is None else redact_url(url)

    @property
    def use_gzip(self) -> bool:
        if self.gzip is not None:
            return self.gzip
        host = (urlsplit(self.url).hostname or "") if self.url else ""
        return not (host in ("localhost", "::1") or host.startswith("127."))

    @model_validator(mode="after")
    def _check_version(self) -> InfluxDBSettings:
        if self.url and self.api_version == 2:
            if not self.org or not self.bucket:
                raise ValueError("api_version 2 needs org and bucket")
            if self.token is None:
                raise ValueError("api_version 2 needs token")
        return self


class BatchSettings(_Section):
    size: int = Field(default=1000, ge=1, le=100_000)
    flush_interval_s: PositiveSeconds = 5.0
    max_pending_batches: int = Field(default=8, ge=1, le=1000)
    """Full batches kept in memory while a write is in flight; more go to the spool on disk."""


class SpoolSettings(_Section):
    max_bytes: int = Field(default=512 * MiB, ge=MiB)
    segment_bytes: int = Field(default=8 * MiB, ge=64 * 1024)
    """Size of one spool file; at most max_bytes / 8, so dropping the oldest file when full costs an eighth."""
    fsync: bool = True
    """fsync each spooled batch, so a power cut loses at most the batch being built in memory."""
    drain_batch_points: int = Field(default=10_000, ge=1, le=1_000_000)
    """Points per write while draining the spool: consecutive spooled batches go out as one request."""


class HistorySettings(_Section):
    retention_days: float = Field(default=30.0, gt=0)


class EntityFilterSettings(_Section):
    domains: list[str] = []
    entities: list[str] = []
    entity_globs: list[str] = []


class EntityCustomization(_Section):
    override_measurement: str | None = None
    ignore_attributes: list[str] = []


class MappingSettings(_Section):
    """How a state becomes a point. Names and defaults follow Home Assistant's InfluxDB integration."""

    measurement_attr: Literal["unit_of_measurement", "domain__device_class", "entity_id"] = "unit_of_measurement"
    default_measurement: str | None = None
    override_measurement: str | None = None
    tags: dict[str, str] = {}
    tags_attributes: list[str] = []
    ignore_attributes: list[str] = []
    include: EntityFilterSettings = EntityFilterSettings()
    exclude: EntityFilterSettings = EntityFilterSettings()
    component_config: dict[str, EntityCustomization] = {}
    component_config_domain: dict[str, EntityCustomization] = {}
    component_config_glob: dict[str, EntityCustomization] = {}
    area_tag: bool = False
    """Add an ``area`` tag from the metadata store (a Grafana helper; off by default like HA)."""
    device_tag: bool = False


class LogSettings(_Section):
    format: Literal["auto", "journal", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


MIN_HTTP_TOKEN_CHARS = 16


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    token: SecretStr | None = None
    """Bearer token for /api/*; required when ``host`` is not a loopback address, then at least
    ``MIN_HTTP_TOKEN_CHARS`` characters. Empty or blank counts as unset."""
    max_page_size: int = Field(default=1000, ge=1, le=10_000)
    """Largest ``limit`` a list endpoint serves; a larger one is served as this."""
    idle_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    """A connection is closed when no complete request (line and headers) arrives this long after it opened
    or after the last response: it bounds idle keep-alive connections and slow-header clients alike."""
    unredacted_attributes: list[str] = []
    """Attribute names the API shows as they are, although they look like secrets (docs/api.md, "Redaction")."""
    max_connections: int = Field(default=256, ge=8, le=65_536)
    """Open client connections at most (further ones first displace the longest-idle connection, else are
    closed at once); also kept below the process's file descriptor limit minus a reserve for the stores,
    the spool and InfluxDB (docs/api.md, "Limits")."""

    @model_validator(mode="before")
    @classmethod
    def _blank_token(cls, data: Any) -> Any:
        """A blank token (``token = ""``, ``HOMEIQ_HTTP__TOKEN=``, an empty credential file) is no token: fine
        on loopback (no auth), a configuration error on any other address, never an accepted empty bearer."""
        if not isinstance(data, Mapping) or "token" not in data:
            return data
        value = data["token"]
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str) or text.strip():
            return data
        host = data.get("host", "127.0.0.1")
        if data.get("enabled", True) not in (False, "false", "0") and not _is_loopback(str(host)):
            raise ValueError(
                f"@token: is empty, and {host!r} is not a loopback address; set a token of at least "
                f"{MIN_HTTP_TOKEN_CHARS} characters (e.g. from `openssl rand -hex 24`) or bind to 127.0.0.1"
            )
        return {key: item for key, item in data.items() if key != "token"}

    @model_validator(mode="after")
    def _check_exposure(self) -> HttpSettings:
        if not self.enabled or _is_loopback(self.host):
            return self
        if self.token is None:
            raise ValueError(
                f"@host: {self.host!r} is not a loopback address; set http.token (or the http_token credential) "
                "so /api/* needs it, or bind to 127.0.0.1"
            )
        token = self.token.get_secret_value()
        if len(token.strip()) < MIN_HTTP_TOKEN_CHARS:
            raise ValueError(
                f"@token: shorter than {MIN_HTTP_TOKEN_CHARS} characters, too easy to guess on a network; "
                "use e.g. `openssl rand -hex 24`"
            )
        return self


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as exposed


class MetadataSettings(_Section):
    state_flush_interval_s: PositiveSeconds = 300.0
    """How often the metadata store writes what is due (new entities, first states, removals, other sources'
    states, staged values) in one transaction. Updates of states Home Assistant's snapshot restores are
    written only on stop (docs/reliability.md: what a power cut costs)."""
    registry_refresh_delay_s: float = Field(default=1.0, ge=0, le=60)
    """Wait after a registry event before fetching, so a burst of events costs one round trip."""


class ReplaySettings(_Section):
    path: Path | None = None
    speed: float = Field(default=0.0, ge=0)
    """0 replays as fast as the pipeline takes it; 1.0 keeps the recorded pacing; 10 is ten times faster."""
    shift_to_now: bool = False
    """Move all timestamps so the last recorded event lands at the present (demos, retention)."""
    shift_to: AwareDatetime | None = None
    """Move all timestamps so the last recorded event lands at this time: a fixed anchor, so replaying the
    same file again writes the same points (InfluxDB and the embedded store overwrite, nothing is added)."""

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value


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


# --- entity filter (same semantics as Home Assistant's include/exclude filter) --------------------------


def _glob_regex(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


class EntityFilter:
    """Home Assistant's include/exclude rules (helpers/entityfilter.py), so a user's existing config keeps
    its meaning. Entity lists win over globs, globs over domains; see the six cases in the docs."""

    def __init__(self, include: EntityFilterSettings, exclude: EntityFilterSettings) -> None:
        self._inc_e = frozenset(include.entities)
        self._inc_d = frozenset(include.domains)
        self._inc_g = _glob_regex(include.entity_globs)
        self._exc_e = frozenset(exclude.entities)
        self._exc_d = frozenset(exclude.domains)
        self._exc_g = _glob_regex(exclude.entity_globs)
        self._have_include = bool(self._inc_e or self._inc_d or self._inc_g)
        self._have_exclude = bool(self._exc_e or self._exc_d or self._exc_g)
        self._cache: dict[str, bool] = {}

    def __call__(self, entity_id: str) -> bool:
        result = self._cache.get(entity_id)
        if result is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            result = self._cache[entity_id] = self._decide(entity_id)
        return result

    def _decide(self, entity_id: str) -> bool:
        domain = entity_id.partition(".")[0]
        inc_g = bool(self._inc_g and self._inc_g.match(entity_id))
        exc_g = bool(self._exc_g and self._exc_g.match(entity_id))
        if not self._have_include and not self._have_exclude:
            return True
        if self._have_include and not self._have_exclude:
            return entity_id in self._inc_e or domain in self._inc_d or inc_g
        if not self._have_include and self._have_exclude:
            return not (entity_id in self._exc_e or domain in self._exc_d or exc_g)
        if self._inc_d or self._inc_g:
            if entity_id in self._inc_e:
                return True
            if entity_id in self._exc_e:
                return False
            if inc_g:
                return True
            if exc_g:
                return False
            return domain in self._inc_d
        if self._exc_d or self._exc_g:
            if entity_id in self._inc_e:
                return True
            if entity_id in self._exc_e:
                return False
            return not (exc_g or domain in self._exc_d)
        return entity_id in self._inc_e
