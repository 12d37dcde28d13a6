"""InfluxDB writer: ``/write`` (1.x) and ``/api/v2/write`` (2.x). Reading history is ``query.py``; both
authenticate and open sessions through ``http.py``.

One call writes one batch body. Transient failures (connection errors, timeouts, 5xx, 429 with
``Retry-After``) are retried a few times with exponential backoff and jitter, then raised as
TransientSinkError so the delivery loop can spool the batch. A 400/422 (bad line, field type conflict,
partial write) or 413 never blocks a batch: it is split in halves until the bad lines are isolated; the good
lines are written and the bad ones go to the dead-letter file. Timestamps come from the events, so writing
a line twice (a partial write followed by the split) leaves one point.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from homeiq_daemon.config import InfluxDBSettings
from homeiq_daemon.errors import RejectedBatchError, SinkAuthError, TransientSinkError
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
from homeiq_daemon.sinks.influx.http import InfluxClient
from homeiq_daemon.sinks.lineparse import split_lines

log = get_logger("homeiq.influx")

_TRANSIENT_STATUS = frozenset((408, 429, 500, 502, 503, 504))
_MAX_RETRY_AFTER_S = 300.0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return None  # an HTTP date: rare from InfluxDB; fall back to our own backoff


class InfluxWriter(InfluxClient):
    def __init__(
        self, settings: InfluxDBSettings, dead_letters: DeadLetters, stats: Stats,
        *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings)
        self._sleep = sleep  # the wait between attempts (tests record it instead of waiting)
        self._dead_letters = dead_letters
        self._stats = stats
        self._database_checked = False
        self._gzip = settings.use_gzip
        base = settings.url
        if settings.api_version == 1:
            query = f"db={quote(settings.database, safe='')}&precision=ns"
            if settings.retention_policy:
                query += f"&rp={quote(settings.retention_policy, safe='')}"
            self._write_url = f"{base}/write?{query}"
        else:
            org = quote(settings.org or "", safe="")
            bucket = quote(settings.bucket or "", safe="")
            self._write_url = f"{base}/api/v2/write?org={org}&bucket={bucket}&precision=ns"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}

    @property
    def describe(self) -> str:
        s = self._settings
        target = f"db={s.database}" if s.api_version == 1 else f"org={s.org} bucket={s.bucket}"
        return f"InfluxDB {s.api_version}.x at {redact_url(s.url or '')} ({target})"

    # --- the write path ---------------------------------------------------------------------------

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        """Write one batch (plain line protocol in ``body``; ``gzipped`` may carry it pre-compressed)."""
        try:
            await self._write_with_retries(body, gzipped)
        except RejectedBatchError as exc:
            return await self._isolate(body, points, exc)
        return WriteResult(points, 0)

    async def _write_with_retries(self, body: bytes, gzipped: bytes | None) -> None:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after_s", None)
            return hinted if hinted is not None else backoff_delay(state.attempt_number, 0.5, 8.0)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.write_attempts),
            wait=wait,
            retry=retry_if_exception_type(TransientSinkError),
            reraise=True,
            sleep=self._sleep,
        )
        async for attempt in retrying:
            with attempt:
                await self._post(body, gzipped)

    async def _post(self, body: bytes, gzipped: bytes | None) -> None:
        if self._session is None:
            raise TransientSinkError("writer is not started")
        headers = dict(self._headers)
        data = body
        if self._gzip:
            # zlib releases the GIL: compressing in a thread keeps the event loop (and the HA reader) free.
            data = gzipped if gzipped is not None else await asyncio.to_thread(gzip.compress, body, 1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        started = time.perf_counter()
        try:
            async with self._session.post(self._write_url, data=data, headers=headers) as resp:
                status = resp.status
                if status in (200, 204):
                    self._stats.record_flush(time.perf_counter() - started)
                    return
                text = (await resp.text(errors="replace"))[:500]
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._stats.sink_errors[type(exc).__name__] += 1
            raise TransientSinkError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        self._stats.sink_errors[str(status)] += 1
        if status in _TRANSIENT_STATUS:
            raise TransientSinkError(f"HTTP {status}: {text}", retry_after_s=retry_after, status=status)
        if status in (400, 413, 422):
            raise RejectedBatchError(f"HTTP {status}: {text}", status=status)
        if status in (401, 403):
            raise SinkAuthError(f"HTTP {status}: InfluxDB refused the credentials: {text}", status=status)
        if status == 404 and self._settings.api_version == 1 and "database not found" in text:
            if self._settings.create_database and await self._create_database():
                raise TransientSinkError("database was missing and has been created", retry_after_s=0.0)
            raise TransientSinkError(f"database {self._settings.database!r} does not exist", status=status)
        raise TransientSinkError(f"HTTP {status}: {text}", status=status)

    async def _create_database(self) -> bool:
        assert self._session is not None
        name = self._settings.database.replace("\\", "\\\\").replace('"', '\\"')
        url = f"{self._settings.url}/query"
        try:
            async with self._session.post(url, data={"q": f'CREATE DATABASE "{name}"'}) as resp:
                ok = resp.status == 200
                if ok:
                    log.info("influx.database_created", database=self._settings.database)
                else:
                    log.warning(
                        "influx.create_database_failed",
                        status=resp.status,
                        detail=(await resp.text(errors="replace"))[:200],
                    )
                return ok
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("influx.create_database_failed", error=str(exc))
            return False

    async def ensure_database(self) -> None:
        """Create the 1.x database at start when asked to; harmless when it exists."""
        if self._settings.api_version == 1 and self._settings.create_database and not self._database_checked:
            self._database_checked = await self._create_database()

    async def ping(self) -> bool:
        if self._session is None:
            return False
        try:
            async with self._session.get(f"{self._settings.url}/ping") as resp:
                return resp.status in (200, 204)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    # --- poison isolation -------------------------------------------------------------------------

    async def _isolate(self, body: bytes, points: int, first_error: RejectedBatchError) -> WriteResult:
        """Split a rejected batch until the bad lines are alone; write the rest, dead-letter the bad."""
        lines = [line for line in split_lines(body.decode()) if line]
        log.warning(
            "influx.batch_rejected", status=first_error.status, points=len(lines), detail=str(first_error)[:300]
        )
        written, rejected = await self._bisect(lines, first_error)
        # ``points`` from the caller may count lines the encoder skipped; report what we saw.
        del points
        return WriteResult(written, rejected)

    async def _bisect(self, lines: list[str], error: RejectedBatchError) -> tuple[int, int]:
        if len(lines) == 1:
            reason = f"HTTP {error.status}: {error}"
            self._dead_letters.add(lines[0], reason)
            self._stats.record_dead_letter(reason)
            self._stats.points_dropped["rejected"] += 1
            return 0, 1
        middle = len(lines) // 2
        written = rejected = 0
        for half in (lines[:middle], lines[middle:]):
            chunk = ("\n".join(half) + "\n").encode()
            try:
                await self._write_with_retries(chunk, None)
            except RejectedBatchError as exc:
                w, r = await self._bisect(half, exc)
                written += w
                rejected += r
            else:
                written += len(half)
            await asyncio.sleep(0)
        return written, rejected
