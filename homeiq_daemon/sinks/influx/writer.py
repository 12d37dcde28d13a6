"""InfluxDB writer: the only module that talks to InfluxDB (1.x ``/write``, 2.x ``/api/v2/write``; and
``/query`` for the API's history reads, at the end of this file).

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
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from homeiq_daemon.config import InfluxDBSettings
from homeiq_daemon.errors import HistoryUnavailable, RejectedBatchError, SinkAuthError, TransientSinkError
from homeiq_daemon.model import ns_to_iso
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
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


def _credentials(settings: InfluxDBSettings, headers: dict[str, str]) -> aiohttp.BasicAuth | None:
    """2.x: a token header (added to ``headers``); 1.x: HTTP basic auth when a user is set."""
    if settings.api_version == 2 and settings.token is not None:
        headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
    if settings.api_version == 1 and settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        return aiohttp.BasicAuth(settings.username, password)
    return None


def _open_session(settings: InfluxDBSettings, auth: aiohttp.BasicAuth | None) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s, sock_connect=min(5.0, settings.timeout_s))
    connector = aiohttp.TCPConnector(limit=4, ssl=settings.verify_ssl)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auth=auth)


class InfluxWriter:
    def __init__(
        self, settings: InfluxDBSettings, dead_letters: DeadLetters, stats: Stats,
        *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        assert settings.url is not None
        self._settings = settings
        self._sleep = sleep  # the wait between attempts (tests record it instead of waiting)
        self._dead_letters = dead_letters
        self._stats = stats
        self._session: aiohttp.ClientSession | None = None
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
        self._headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "homeiq-daemon"}
        self._auth = _credentials(settings, self._headers)

    @property
    def describe(self) -> str:
        s = self._settings
        target = f"db={s.database}" if s.api_version == 1 else f"org={s.org} bucket={s.bucket}"
        return f"InfluxDB {s.api_version}.x at {redact_url(s.url or '')} ({target})"

    async def start(self) -> None:
        self._session = _open_session(self._settings, self._auth)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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


# --- reading: InfluxQL over HTTP (/query), for the API's history endpoint ------------------------------


def influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal. InfluxQL's scanner knows the escapes \\\\, \\', \\" and \\n
    and refuses a raw newline; nothing else needs escaping."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def influxql_identifier(value: str) -> str:
    """A double-quoted InfluxQL identifier (same scanner as strings)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def entity_history_query(
    entity_id: str,
    start_ns: int,
    end_ns: int,
    limit: int,
    *,
    database: str | None = None,
    rp: str | None = None,
    newest_first: bool = False,
) -> str:
    """Points of one entity across every measurement (the HA schema puts it under its unit, or its id)."""
    domain, _, object_id = entity_id.partition(".")
    source = "/.*/"
    if database and rp:
        source = f"{influxql_identifier(database)}.{influxql_identifier(rp)}./.*/"
    return (  # every value is escaped above, or is an int
        f'SELECT * FROM {source} WHERE "domain" = {influxql_string(domain)} AND '  # noqa: S608
        f'"entity_id" = {influxql_string(object_id)} AND time >= {int(start_ns)} AND time < {int(end_ns)} '
        f"ORDER BY time {'DESC' if newest_first else 'ASC'} LIMIT {int(limit)}"
    )


def parse_query_points(payload: object, *, newest_first: bool = False) -> list[dict[str, Any]]:
    """A /query JSON answer (``epoch=ns``) -> points sorted by time: ``{time_ns, measurement, value, state,
    fields}`` where ``fields`` holds every other non-null column (fields and extra tags)."""
    if not isinstance(payload, dict):
        raise HistoryUnavailable("InfluxDB answered something that is not a JSON object")
    if payload.get("error"):
        raise HistoryUnavailable(str(payload["error"])[:300])
    points: list[dict[str, Any]] = []
    for result in payload.get("results") or []:
        if not isinstance(result, dict):
            continue
        if result.get("error"):
            raise HistoryUnavailable(str(result["error"])[:300])
        for series in result.get("series") or []:
            columns = series.get("columns") or []
            measurement = series.get("name")
            for values in series.get("values") or []:
                row = dict(zip(columns, values, strict=False))
                time_ns = row.pop("time", None)
                if not isinstance(time_ns, int):
                    continue
                row.pop("domain", None)
                row.pop("entity_id", None)
                value = row.pop("value", None)
                state = row.pop("state", None)
                points.append(
                    {
                        "time_ns": time_ns,
                        "measurement": measurement,
                        "value": value,
                        "state": state,
                        "fields": {k: v for k, v in row.items() if v is not None},
                    }
                )
    points.sort(key=lambda p: p["time_ns"], reverse=newest_first)
    return points


class InfluxHistory:
    """Reads one entity's history with InfluxQL (``/query``; on 2.x through its v1-compatible endpoint, which
    needs a DBRP mapping for the bucket)."""

    source = "influxdb"

    def __init__(self, settings: InfluxDBSettings) -> None:
        assert settings.url is not None
        self._settings = settings
        self._url = f"{settings.url}/query"
        self._database = settings.database if settings.api_version == 1 else (settings.bucket or "")
        self._headers = {"User-Agent": "homeiq-daemon", "Accept": "application/json"}
        self._auth = _credentials(settings, self._headers)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = _open_session(self._settings, self._auth)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def entity_points(
        self, entity_id: str, start_ns: int, end_ns: int, limit: int, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """As ``entity_history``, with ``time_ns`` (an int) instead of ``time``."""
        rp = self._settings.retention_policy if self._settings.api_version == 1 else None
        q = entity_history_query(
            entity_id, start_ns, end_ns, limit, database=self._database, rp=rp, newest_first=newest_first
        )
        return parse_query_points(await self.query(q), newest_first=newest_first)[:limit]  # LIMIT is per measurement

    async def query(self, influxql: str) -> object:
        if self._session is None:
            raise HistoryUnavailable("history reader is not started")
        params = {"db": self._database, "q": influxql, "epoch": "ns"}
        if self._settings.retention_policy:
            params["rp"] = self._settings.retention_policy
        try:
            async with self._session.get(self._url, params=params, headers=self._headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise HistoryUnavailable(f"HTTP {resp.status}: {body[:200].decode(errors='replace')}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HistoryUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HistoryUnavailable("InfluxDB answered with invalid JSON") from None

    async def entity_history(
        self, entity_id: str, start_ns: int, end_ns: int, limit: int, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` points, oldest first (or the newest ``limit``, newest first), ``time`` as ISO."""
        points = await self.entity_points(entity_id, start_ns, end_ns, limit, newest_first=newest_first)
        for point in points:
            point["time"] = ns_to_iso(point.pop("time_ns"))
        return points
