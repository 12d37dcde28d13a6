"""The HTTP side of webhook deliveries: the only aiohttp client in this package, and what an answer means.

``classify`` and ``parse_retry_after`` are pure; ``WebhookClient.post`` makes one attempt and never raises
for network trouble: every outcome comes back as an ``AttemptResult`` the dispatcher can act on.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from homeiq_daemon import __version__
from homeiq_daemon.redaction import redact_text

Outcome = Literal["delivered", "retry", "final"]
RETRYABLE_STATUSES = frozenset({408, 429})
MAX_RESPONSE_BYTES = 4096  # kept for logs and `homeiq webhooks test`; a receiver's page is not our business
USER_AGENT = f"homeiq/{__version__}"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout, TLS)
    body: str = ""
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def outcome(self) -> Outcome:
        return classify(self.status)

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        snippet = " ".join(self.body.split())[:200]
        return f"HTTP {self.status}" + (f": {snippet}" if snippet else "")


def classify(status: int | None) -> Outcome:
    """2xx delivered; no answer, 408, 429 and 5xx are worth retrying; anything else (3xx, 4xx) is final."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_STATUSES or status >= 500:
        return "retry"
    return "final"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date -> seconds from ``now`` (>= 0); None when absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


class WebhookClient:
    """One keep-alive session for every target (a connection per target stays warm: low latency)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=True
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, verify_ssl: bool = True
    ) -> AttemptResult:
        if self._session is None:
            await self.start()
        assert self._session is not None  # start() just made it
        try:
            async with self._session.post(
                url,
                data=body,
                headers={**headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,  # a redirected POST is ambiguous; the URL should be fixed instead
                ssl=verify_ssl,
            ) as response:
                text = await _read_bounded(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                return AttemptResult(response.status, text, None, retry_after)
        except TimeoutError:
            return AttemptResult(None, error=f"timeout after {timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            return AttemptResult(None, error=f"cannot connect: {exc.os_error.strerror or exc.os_error}")
        except (aiohttp.ClientError, OSError) as exc:
            detail = redact_text(str(exc))  # a webhook URL is a secret; never log it whole
            return AttemptResult(None, error=type(exc).__name__ + (f": {detail}" if detail else ""))


async def _read_bounded(response: aiohttp.ClientResponse) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
