"""The ``[webhooks]`` settings: rules, targets, secrets and the outbox's bounds. Validated at start.

A rule sends to a named ``[webhooks.targets.<name>]`` entry (``target = "<name>"``) or to its own ``url``
(an inline target named after the rule). Secrets are ``whsec_<base64>``; several separated by spaces during
a rotation (all of them sign). Under systemd, the file ``$CREDENTIALS_DIRECTORY/webhook_<name>`` fills the
secret of the target (or inline rule) called ``<name>``, and wins over the TOML file.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from homeiq_daemon.config.sections import url_port_ok
from homeiq_daemon.redaction import redact_url

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 24  # the spec's recommended range: 24 to 64 random bytes
MAX_SECRET_BYTES = 64


class SecretFormatError(ValueError):
    pass


def decode_secret(text: str) -> bytes:
    """``whsec_<base64>`` -> key bytes. Raises SecretFormatError naming what is wrong, never echoing it."""
    if not text.startswith(SECRET_PREFIX):
        raise SecretFormatError(f"must look like {SECRET_PREFIX}<base64 of 24 to 64 random bytes>")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"the part after {SECRET_PREFIX} is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SecretFormatError(
            f"decodes to {len(key)} bytes; use 24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))"
        )
    return key


def parse_secrets(text: str) -> list[bytes]:
    """Several secrets separated by whitespace (a rotation window): the first is the newest."""
    keys = [decode_secret(part) for part in text.split()]
    if not keys:
        raise SecretFormatError("is empty")
    return keys


def encode_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


OUTBOX_FILE = "webhooks.db"  # in the state directory; its own file, apart from the other stores
CREDENTIAL_PREFIX = "webhook_"
CREDENTIALS_KEY = "_credential_secrets"  # where the credentials source puts webhook_<name> files
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Seconds = Annotated[float, Field(ge=0, le=86_400)]
StringList = list[str]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL, e.g. http://homeassistant.local:8123/api/webhook/<id>")
    return url_port_ok(value)


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    try:
        parse_secrets(value.get_secret_value())
    except SecretFormatError as exc:
        raise ValueError(str(exc)) from None
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookTarget(_Section):
    url: str
    secret: SecretStr | None = None
    """``whsec_<base64>``; several separated by spaces while rotating. Unset: deliveries are not signed."""
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    """Requests in flight to this target at once; default ``webhooks.concurrency``."""
    verify_ssl: bool = True

    @field_validator("url")
    @classmethod
    def _check_target_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("secret")
    @classmethod
    def _check_target_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)

    @field_serializer("url")
    def _show_url(self, url: str) -> str:
        return redact_url(url)

    @cached_property
    def keys(self) -> list[bytes]:
        return parse_secrets(self.secret.get_secret_value()) if self.secret is not None else []


class WebhookRule(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    enabled: bool = True
    entities: StringList = []
    """Entity ids, or globs with * ? [ ] (``sensor.*_temperature``)."""
    domains: StringList = []
    areas: StringList = []
    """Area ids or names from the metadata store (matched case-insensitively)."""
    to: StringList | None = None
    from_: StringList | None = Field(default=None, alias="from")
    above: float | None = None
    below: float | None = None
    attribute: str | None = None
    """Watch this attribute instead of the state (for to/from/above/below, or alone: fires when it changes)."""
    for_s: Seconds = 0.0
    """The condition must hold this long before the rule fires (like Home Assistant's ``for:``)."""
    throttle_s: Seconds = 0.0
    """At most one delivery per entity in this window; later matches inside it are dropped (counted)."""
    debounce_s: Seconds = 0.0
    """Fire once matches for an entity have been quiet this long, with the latest one."""
    target: str | None = None
    url: str | None = None
    secret: SecretStr | None = None

    @field_validator("to", "from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("secret")
    @classmethod
    def _check_rule_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1 to 64 letters, digits, _ or - (it names credentials and log lines)")
        return value

    @field_validator("url")
    @classmethod
    def _check_inline_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_serializer("url")
    def _show_url(self, url: str | None) -> str | None:
        return None if url is None else redact_url(url)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and "from_" in data:  # show the setting as it is written: `from`
            data["from"] = data.pop("from_")
        return data

    @model_validator(mode="after")
    def _check_rule(self) -> WebhookRule:
        if not (self.entities or self.domains or self.areas):
            raise ValueError("needs entities, domains or areas (which entities the rule watches)")
        numeric = self.above is not None or self.below is not None
        if numeric and (self.to is not None or self.from_ is not None):
            raise ValueError("use either to/from or above/below, not both")
        if self.above is not None and self.below is not None and self.above >= self.below:
            raise ValueError("above must be less than below")
        if (self.target is None) == (self.url is None):
            raise ValueError('needs exactly one of target = "<name in [webhooks.targets]>" or url')
        if self.secret is not None and self.url is None:
            raise ValueError("secret belongs to the target when the rule uses target =")
        if self.for_s and self.debounce_s:
            raise ValueError("use for_s or debounce_s, not both")
        return self

    @property
    def target_name(self) -> str:
        return self.target if self.target is not None else self.name


class WebhookSettings(_Section):
    rules: list[WebhookRule] = []
    targets: dict[str, WebhookTarget] = {}
    concurrency: int = Field(default=2, ge=1, le=64)
    """Default requests in flight per target."""
    horizon_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    """How long a delivery is retried before it is dead-lettered."""
    retry_initial_s: float = Field(default=1.0, gt=0, le=3600)
    retry_max_s: float = Field(default=600.0, gt=0, le=86_400)
    """Longest wait between two attempts (a Retry-After from the receiver may ask for longer)."""
    max_pending: int = Field(default=10_000, ge=1, le=1_000_000)
    """Undelivered deliveries kept in the outbox; matches beyond it are dropped (counted, logged)."""
    keep_days: float = Field(default=7.0, gt=0, le=3650)
    """Finished deliveries stay this long for ``homeiq webhooks log``."""

    @model_validator(mode="before")
    @classmethod
    def _apply_credentials(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or CREDENTIALS_KEY not in data:
            return data
        data = dict(data)
        secrets: dict[str, str] = data.pop(CREDENTIALS_KEY)
        targets = dict(data.get("targets") or {})
        rules = list(data.get("rules") or [])
        for name, value in secrets.items():
            if name in targets:
                targets[name] = _with_secret(targets[name], value)
                continue
            for index, rule in enumerate(rules):
                rule_map = rule.model_dump(by_alias=True) if isinstance(rule, BaseModel) else rule
                if isinstance(rule_map, Mapping) and rule_map.get("name") == name and rule_map.get("url"):
                    rules[index] = _with_secret(rule, value)
                    break
            else:
                raise ValueError(
                    f"credential file {CREDENTIAL_PREFIX}{name}: there is no [webhooks.targets.{name}] and no "
                    f'rule named "{name}" with its own url'
                )
        data["targets"] = targets
        data["rules"] = rules
        return data

    @model_validator(mode="after")
    def _check_names(self) -> WebhookSettings:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            where = f"@rules[{index}]"  # "@": the error names this sub-setting (see config._describe)
            if rule.name in seen:
                raise ValueError(f'{where}: another rule is already named "{rule.name}"')
            seen.add(rule.name)
            if rule.target is not None and rule.target not in self.targets:
                raise ValueError(f"{where}.target: no [webhooks.targets.{rule.target}] is configured")
            if rule.url is not None and rule.name in self.targets:
                raise ValueError(f'{where}.name: "{rule.name}" is also a target name; rename one of them')
        for name in self.targets:
            if not _NAME.match(name):
                raise ValueError(f"@targets.{name}: use 1 to 64 letters, digits, _ or - in target names")
        return self

    @cached_property
    def all_targets(self) -> dict[str, WebhookTarget]:
        """Named targets plus each inline rule target (named after its rule)."""
        targets = dict(self.targets)
        for rule in self.rules:
            if rule.url is not None:
                targets[rule.name] = WebhookTarget(url=rule.url, secret=rule.secret)
        return targets

    def rule(self, name: str) -> WebhookRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    def target_concurrency(self, target: WebhookTarget) -> int:
        return target.concurrency or self.concurrency


def _with_secret(entry: Any, value: str) -> Any:
    if isinstance(entry, BaseModel):
        return entry.model_copy(update={"secret": SecretStr(value)})
    if isinstance(entry, Mapping):
        return {**entry, "secret": value}
    return entry


def read_credentials(directory: Path, read: Callable[[Path], str]) -> dict[str, str]:
    """``webhook_<name>`` files under $CREDENTIALS_DIRECTORY -> {name: secret text}; ``read`` reads one file
    (and reports an unreadable or undecodable one without its content)."""
    found: dict[str, str] = {}
    for path in sorted(directory.glob(f"{CREDENTIAL_PREFIX}*")):
        name = path.name[len(CREDENTIAL_PREFIX) :]
        try:
            value = read(path)
        except FileNotFoundError:  # removed while we looked
            continue
        if name and value:
            found[name] = value
    return found
