"""The ``[switchbot]`` settings: credentials, device selection, the daily request budget, the webhook path.
The source (sources/switchbot/) and the ``homeiq switchbot`` commands are handed this section.

The source runs when both ``token`` and ``secret`` are set (in the TOML file, ``HOMEIQ_SWITCHBOT__TOKEN``, or
the credentials ``switchbot_token`` / ``switchbot_secret`` under ``$CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from homeiq_daemon.config.sections import OptionalSecret, url_port_ok

DEFAULT_BASE_URL = "https://api.switch-bot.com"
DAILY_LIMIT = 10_000  # the account's quota (README, "Request limit")
DAY_S = 86_400

Seconds = Annotated[float, Field(gt=0, le=86_400)]
_PATH_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class SwitchBotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: OptionalSecret = None
    secret: OptionalSecret = None
    base_url: str = DEFAULT_BASE_URL
    """The Cloud API's address; the daemon sends nothing anywhere else."""
    devices: list[str] = []
    """Device ids or names to poll. Empty: every device whose status has readings (meters, plugs, hubs…)."""
    daily_budget: int = Field(default=DAILY_LIMIT, ge=1, le=1_000_000)
    """Requests the account may make per day (SwitchBot allows 10,000)."""
    reserved_requests: int = Field(default=1000, ge=0)
    """Left unused for the SwitchBot app, the ``homeiq switchbot`` commands and anything else on the account."""
    min_poll_interval_s: Seconds = 60.0
    """Never poll one device more often than this, however much budget there is."""
    device_list_interval_s: float = Field(default=21_600.0, ge=600, le=604_800)
    """How often the device list is fetched again (new devices, renames)."""
    timeout_s: Seconds = 10.0
    attempts: int = Field(default=3, ge=1, le=10)
    """Attempts for one request on a 5xx or a timeout (each one counts against the budget)."""
    retry_max_s: Seconds = 300.0
    """Longest wait between attempts while the Cloud API fails."""
    verify_ssl: bool = True
    webhook_path_secret: SecretStr | None = None
    """Enables the push receiver at ``/switchbot/webhook/<this>`` on the HTTP server (16-128 characters of
    A-Z a-z 0-9 _ -). Unset: no receiver."""

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like https://api.switch-bot.com")
        return url_port_ok(value).rstrip("/")

    @field_validator("webhook_path_secret")
    @classmethod
    def _check_path_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _PATH_SECRET.match(value.get_secret_value()):
            raise ValueError("must be 16-128 characters of A-Z a-z 0-9 _ - (e.g. from `openssl rand -hex 16`)")
        return value

    @model_validator(mode="after")
    def _check_budget(self) -> SwitchBotSettings:
        if (self.token is None) != (self.secret is None):
            missing = "secret" if self.secret is None else "token"
            raise ValueError(f"@{missing}: token and secret go together (SwitchBot app > Developer Options)")
        if self.reserved_requests >= self.daily_budget:
            raise ValueError("@reserved_requests: must be below daily_budget")
        list_requests = math.ceil(DAY_S / self.device_list_interval_s) + 1  # as the poll planner counts them
        if self.enabled and self.usable_requests <= list_requests:
            raise ValueError("@device_list_interval_s: the device list alone would use the whole daily budget")
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None and self.secret is not None

    @property
    def usable_requests(self) -> int:
        """Requests per day the daemon allows itself."""
        return self.daily_budget - self.reserved_requests
