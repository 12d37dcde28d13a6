"""The settings sections of the core stages: Home Assistant, InfluxDB, batching, spool, mapping, logs, HTTP.

Pure pydantic models (no IO, no imports from the feature packages): each feature is handed its own section.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.redaction import redact_url

MiB = 1024 * 1024

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]


def blank_is_unset(value: Any) -> Any:
    """An empty or blank secret (``token = ""``, ``HOMEIQ_…__TOKEN=``) is no secret: the setting's own
    "required" check then names it, instead of an empty value being sent as a credential."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return None if isinstance(text, str) and not text.strip() else value


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(blank_is_unset)]


def url_port_ok(value: str) -> str:
    """``value`` when its port (if any) is 1-65535; a port out of range is a setting error, not a network one."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeAssistantSettings(_Section):
    url: str | None = None
    """Base URL of Home Assistant (http://host:8123) or its WebSocket URL (ws://host:8123/api/websocket)."""
    token: OptionalSecret = None
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
    subscription: Literal["entities", "state_changed"] = "state_changed"
    """``entities``: HA's compressed state diffs (``subscribe_entities``, ~8x fewer bytes per change);
    ``state_changed``: full ``state_changed`` events. The same points either way (docs/performance.md)."""
    read_pacing_s: float = Field(default=0.1, ge=0, le=2.0)
    """Once connected, the connection is read in bursts at most this far apart while no answer is awaited:
    about half the CPU per change at a steady stream, and events (webhooks too) at most this much later.
    0 reads every frame as it arrives."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError("must look like http://homeassistant.local:8123 (or ws://…/api/websocket)")
        return url_port_ok(value)

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
    password: OptionalSecret = None
    org: str | None = None
    bucket: str | None = None
    token: OptionalSecret = None
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
        return url_port_ok(value).rstrip("/")

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
    max_bytes: int = Field(default=512 * MiB, ge=MiB, le=1 << 44)
    segment_bytes: int = Field(default=8 * MiB, ge=64 * 1024, le=1 << 40)
    """Size of one spool file; at most max_bytes / 8, so dropping the oldest file when full costs an eighth
    (an explicit larger value is an error; the default shrinks to max_bytes / 8 by itself)."""
    fsync: bool = True
    """fsync each spooled batch, so a power cut loses at most the batch being built in memory."""
    drain_batch_points: int = Field(default=10_000, ge=1, le=1_000_000)
    """Points per write while draining the spool: consecutive spooled batches go out as one request."""

    @model_validator(mode="after")
    def _check_segment(self) -> SpoolSettings:
        if "segment_bytes" in self.model_fields_set and self.segment_bytes > self.max_bytes // 8:
            raise ValueError(f"segment_bytes must be at most max_bytes / 8 ({self.max_bytes // 8})")
        return self


class HistorySettings(_Section):
    retention_days: float = Field(default=30.0, gt=0, le=36_500, allow_inf_nan=False)


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
