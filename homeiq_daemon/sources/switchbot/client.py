"""The SwitchBot Cloud API client: the only code that sends requests to SwitchBot.

Signed requests (``switchbot_api.signed_headers``) to ``switchbot.base_url`` and nowhere else. Every call times
out (``timeout_s``); 5xx answers, timeouts and dropped connections are retried with backoff and jitter, up to
``attempts`` times; every attempt first calls ``spend`` (the daemon's daily budget), so retries count too.
Quota, credential and request errors are never retried here: the caller decides (see ``switchbot_api``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from homeiq_daemon import __version__
from homeiq_daemon.config.switchbot import SwitchBotSettings
from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.sources.switchbot.api import (
    API_PREFIX,
    SwitchBotAuthError,
    SwitchBotDevice,
    SwitchBotQuotaError,
    SwitchBotRequestError,
    SwitchBotTransientError,
    parse_device_list,
    parse_response,
    signed_headers,
)

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class SwitchBotClient:
    def __init__(
        self,
        settings: SwitchBotSettings,
        *,
        spend: Callable[[], Awaitable[None]] | None = None,
        counts: Counter[str] | None = None,
    ) -> None:
        assert settings.token is not None
        assert settings.secret is not None
        self._settings = settings
        self._token = settings.token.get_secret_value()
        self._secret = settings.secret.get_secret_value()
        self._spend = spend
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SwitchBotClient:
        s = self._settings
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.timeout_s),
            connector=aiohttp.TCPConnector(ssl=s.verify_ssl, limit=2),
            headers={"User-Agent": f"homeiq-daemon/{__version__}"},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """One API call (``path`` after ``/v1.1``), retried on transient failures; returns the body."""
        assert self._session is not None, "use 'async with SwitchBotClient(...)'"
        s = self._settings
        url = f"{s.base_url}{API_PREFIX}{path}"
        data = orjson.dumps(payload) if payload is not None else None
        for attempt in range(1, s.attempts + 1):
            if self._spend is not None:
                await self._spend()
            headers = signed_headers(self._token, self._secret)
            if data is not None:
                headers["Content-Type"] = "application/json; charset=utf8"
            try:
                async with self._session.request(method, url, data=data, headers=headers) as response:
                    raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise SwitchBotTransientError(f"answer over {MAX_RESPONSE_BYTES} bytes")
                    body = parse_response(response.status, raw)
            except SwitchBotTransientError as exc:
                error: SwitchBotTransientError = exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                kind = "timed out" if isinstance(exc, TimeoutError) else f"failed: {str(exc) or type(exc).__name__}"
                error = SwitchBotTransientError(f"request {method} {path} {kind}"[:300])
            except SwitchBotQuotaError:
                self.counts["quota"] += 1
                raise
            except SwitchBotAuthError:
                self.counts["auth"] += 1
                raise
            except SwitchBotRequestError:
                self.counts["rejected"] += 1
                raise
            else:
                self.counts["ok"] += 1
                return body
            self.counts["transient"] += 1
            if attempt == s.attempts:
                raise error
            await asyncio.sleep(backoff_delay(attempt, min(1.0, s.retry_max_s), s.retry_max_s))
        raise AssertionError("unreachable")  # pragma: no cover

    async def device_list(self) -> list[SwitchBotDevice]:
        try:
            return parse_device_list(await self.call("GET", "/devices"))
        except ProtocolError as exc:
            raise SwitchBotTransientError(str(exc)) from None

    async def status(self, device_id: str) -> Any:
        return await self.call("GET", f"/devices/{quote(device_id, safe='')}/status")

    async def setup_webhook(self, url: str) -> Any:
        return await self.call("POST", "/webhook/setupWebhook", {"action": "setupWebhook", "url": url,
                                                                 "deviceList": "ALL"})  # fmt: skip

    async def query_webhook(self) -> Any:
        return await self.call("POST", "/webhook/queryWebhook", {"action": "queryUrl"})

    async def query_webhook_details(self, urls: Sequence[str]) -> Any:
        return await self.call("POST", "/webhook/queryWebhook", {"action": "queryDetails", "urls": list(urls)})

    async def delete_webhook(self, url: str) -> Any:
        return await self.call("POST", "/webhook/deleteWebhook", {"action": "deleteWebhook", "url": url})
