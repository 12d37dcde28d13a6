"""The local HTTP server (aiohttp): /healthz, /metrics and the read-only /api/v1.

Handlers are thin: parse the parameters (apiparams), make one store call (one SQL query), render JSON.
Bad parameters answer 400 with ``{"error": …}``; an unexpected failure answers a JSON 500 and is logged.
``/api/*`` needs ``Authorization: Bearer <http.token>`` whenever a token is set (the settings refuse a
non-loopback address without one). Responses over ``GZIP_MIN_BYTES`` are gzipped for clients that accept it.
See docs/api.md for the endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import hdrs, web
from aiohttp.web_response import ContentCoding

from homeiq_daemon.api import params as apiparams
from homeiq_daemon.api.attributes import AttributeRedactor
from homeiq_daemon.api.connections import ConnectionGuard, connection_limit, descriptor_limit
from homeiq_daemon.api.health import evaluate
from homeiq_daemon.api.params import BadRequest
from homeiq_daemon.api.pushes import MAX_PUSH_BYTES
from homeiq_daemon.api.rows import live_only, overlay
from homeiq_daemon.api.status import STATIC_FILES, load_static
from homeiq_daemon.config import HttpSettings
from homeiq_daemon.errors import ConfigError, HistoryUnavailable, UnavailableError
from homeiq_daemon.metadata.store import EntityQuery, MetadataStore
from homeiq_daemon.model import EntityState, ns_to_iso
from homeiq_daemon.redaction import mask_path
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.metrics import CONTENT_TYPE, DurationCollector, Metrics
from homeiq_daemon.runtime.stats import QueryTimes, Stats
from homeiq_daemon.sinks.embedded import HistoryStore

log = get_logger("homeiq.http")

GZIP_MIN_BYTES = 4096
SERVE_CHECK_S = 5.0
MAX_TIME_NS = 2**63 - 1
DAY_NS = 86_400 * 1_000_000_000
HISTORY_MAX_POINTS = 10_000

_ENTITY_PARAMS = frozenset({"domain", "area", "device", "q", "limit", "cursor"})
_DEVICE_PARAMS = frozenset({"area", "limit", "cursor"})
_AREA_PARAMS = frozenset({"limit", "cursor"})
_HISTORY_PARAMS = frozenset({"start", "end", "limit"})


class HistoryReader(Protocol):
    source: str

    async def entity_history(self, entity_id: str, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        """Points of one entity, oldest first."""
        ...


class EmbeddedHistory:
    """History from the embedded store (when no InfluxDB is configured)."""

    source = "embedded"

    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    async def entity_history(self, entity_id: str, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._store.query(entity_id, start_ns, end_ns, limit)
        return [
            {
                "time": ns_to_iso(r.time_ns),
                "measurement": r.measurement,
                "value": r.value,
                "state": r.state,
                "fields": r.fields,
            }
            for r in rows
        ]


@dataclass(slots=True)
class ApiContext:
    stats: Stats
    store: MetadataStore
    metrics: Metrics
    hub_configured: bool
    spool_max_bytes: int
    history: HistoryReader | None = None
    live_state: Callable[[str], EntityState | None] | None = None
    max_page: int = 1000
    # The status page's document (api/status.py), once the app has wired its parts
    status: Callable[[], dict[str, Any]] | None = None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message, "status": status}, status)


class ApiServer:
    def __init__(self, settings: HttpSettings, context: ApiContext) -> None:
        self._settings = settings
        self.ctx = context
        # Only a digest is kept. A blank token (the settings turn one into "unset" on loopback and refuse it
        # elsewhere) matches nothing: /api/* is then closed, never open.
        token = settings.token.get_secret_value().strip() if settings.token is not None else None
        self._token = hashlib.sha256(token.encode()).digest() if token is not None else None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.connections: ConnectionGuard | None = None
        self._static = load_static()
        self.port: int | None = None
        self._redact = AttributeRedactor(settings.unredacted_attributes)  # see api/attributes.py
        self.request_times = QueryTimes()
        doc = "Time to answer one HTTP request (server side)."
        context.metrics.register(
            DurationCollector("homeiq_http_request_duration_seconds", doc, "route", self.request_times)
        )
        # The API reads no body but SwitchBot's small pushes: aiohttp's own body limit stays as small.
        self.app = web.Application(middlewares=[self._errors, self._auth], client_max_size=MAX_PUSH_BYTES)
        routes = self.app.router
        routes.add_get("/healthz", self.healthz)
        routes.add_get("/metrics", self.metrics)
        routes.add_get("/", self.status_page)
        routes.add_get("/static/{name}", self.static_file)
        routes.add_get("/api/v1/status", self.status)
        routes.add_get("/api/v1/areas", self.areas)
        routes.add_get("/api/v1/devices", self.devices)
        routes.add_get("/api/v1/entities", self.entities)
        routes.add_get("/api/v1/entities/{entity_id}", self.entity)
        routes.add_get("/api/v1/entities/{entity_id}/history", self.history)

    def add_route(self, method: str, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> None:
        """A feature's own endpoint (e.g. SwitchBot's push receiver), added before ``start``. It gets the
        server's limits, error handling and request timing; outside ``/api/`` it needs no token (the feature
        authenticates its callers itself)."""
        if self._runner is not None:
            raise RuntimeError(f"http: route {method} {path} added after the server started")
        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        s = self._settings
        # keepalive_timeout runs from the moment a connection opens until a complete request has arrived,
        # and again after each response: it bounds idle keep-alive and slow-header clients alike.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, keepalive_timeout=s.idle_timeout_s, lingering_time=2.0
        )
        await self._runner.setup()
        fd_limit = descriptor_limit()
        protocols = self._runner.server
        assert protocols is not None  # set by setup()
        self.connections = ConnectionGuard(protocols, connection_limit(s.max_connections, fd_limit))
        self.ctx.metrics.register(self.connections)
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(self.connections, s.host, s.port, reuse_address=True, backlog=128)
        except OSError as exc:
            what = f"http: cannot listen on {s.host}:{s.port}: {exc.strerror or exc}"
            # Port held by another process, or address not up yet (boot): a restart may cure it, so not 78.
            busy = exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
            raise (UnavailableError if busy else ConfigError)(what) from None
        sockets = self._listener.sockets
        self.port = sockets[0].getsockname()[1] if sockets else s.port  # the bound port, when port 0 asked for one
        log.info("http.listening", host=s.host, port=self.port, auth=self._token is not None,
                 max_connections=self.connections.limit, fd_limit=fd_limit)  # fmt: skip
        if self.connections.limit < s.max_connections:
            log.warning("http.connections_lowered", configured=s.max_connections, limit=self.connections.limit,
                        fd_limit=fd_limit, hint="raise LimitNOFILE= (the unit sets 4096)")  # fmt: skip

    async def serve(self) -> None:
        """The supervised side of the server: ends (raising) if the listening socket stops serving."""
        while True:
            await asyncio.sleep(SERVE_CHECK_S)
            listener = self._listener
            if listener is not None and not listener.is_serving():
                raise RuntimeError(f"HTTP server on port {self.port} stopped listening")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- middlewares ----------------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return self._compress(request, await handler(request))
        except BadRequest as exc:
            return _error(400, str(exc))
        except HistoryUnavailable as exc:
            return _error(502, f"history backend: {exc}")
        except web.HTTPException as exc:
            if exc.status == 405:
                return _error(405, "method not allowed: the API is read-only (GET)")
            return _error(exc.status, exc.reason)
        except Exception:
            log.exception("http.handler_failed", path=mask_path(request.path)[:200])
            return _error(500, "internal error (logged)")
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            self.request_times.add(route, time.perf_counter() - started)

    @staticmethod
    def _compress(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        if isinstance(response, web.Response) and response.body is not None:
            size = len(response.body) if isinstance(response.body, bytes) else 0
            if size >= GZIP_MIN_BYTES and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
                response.enable_compression(ContentCoding.gzip)
            if size >= GZIP_MIN_BYTES:
                response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        return response

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Decided on the route that matched, not on the raw path: `//api/…` or `/x/../api/…` reach the same
        # handler and need the same token. Anything unmatched is a 404 without reaching a handler.
        needs = _needs_token(request)
        if self._token is not None and needs is not None and not self._authorised(request):
            if needs == "page":  # a browser asks for the token itself (any user name, the token as password)
                response = _error(401, "the status page needs http.token as the password (any user name)")
                response.headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="homeiq", charset="UTF-8"'
            else:
                response = _error(401, "a valid 'Authorization: Bearer <token>' header is required")
                response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="homeiq"'
            return response
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        """``Bearer <token>``, or HTTP Basic with the token as password: what a browser sends after it asked
        for the status page's password (it then sends the same header with the page's API calls)."""
        assert self._token is not None
        scheme, _, credential = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        scheme = scheme.lower()
        given = credential.strip().encode()
        if scheme == "basic":
            try:
                given = base64.b64decode(given, validate=True).partition(b":")[2]
            except ValueError:
                return False
        elif scheme != "bearer":
            return False
        if not given:  # a bare "Bearer" (or an empty password) never matches, whatever the settings say
            return False
        # Equal-length digests: the comparison takes the same time whatever the length or content given.
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._token)

    # --- handlers -------------------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        return self._static_response("index.html")

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in STATIC_FILES:
            return _error(404, "Not Found")
        return self._static_response(name)

    def _static_response(self, name: str) -> web.Response:
        response = web.Response(body=self._static[name], content_type=STATIC_FILES[name], charset="utf-8")
        response.headers[hdrs.CACHE_CONTROL] = "no-cache"
        # Nothing but this server's own files, no inline script, no framing by other sites.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def status(self, request: web.Request) -> web.Response:
        apiparams.check_params(request.query.items(), frozenset())
        if self.ctx.status is None:
            return _error(503, "starting: the status is not available yet")
        response = _json(self.ctx.status())
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        ctx = self.ctx
        report = evaluate(
            ctx.stats, time.time(), hub_configured=ctx.hub_configured, spool_max_bytes=ctx.spool_max_bytes
        )
        return _json(report.body, report.http_status)

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.ctx.metrics.render())
        response.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE
        return response

    def _page(self, items: list[dict[str, Any]], limit: int, key: str) -> dict[str, Any]:
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = apiparams.encode_cursor(items[-1][key])
        return {"items": items, "count": len(items), "next_cursor": next_cursor}

    async def areas(self, request: web.Request) -> web.Response:
        params = apiparams.check_params(request.query.items(), _AREA_PARAMS)
        limit = apiparams.limit(params, self.ctx.max_page)
        rows = await self.ctx.store.areas(after=apiparams.cursor(params), limit=limit + 1)
        return _json(self._page(rows, limit, "area_id"))

    async def devices(self, request: web.Request) -> web.Response:
        params = apiparams.check_params(request.query.items(), _DEVICE_PARAMS)
        limit = apiparams.limit(params, self.ctx.max_page)
        rows = await self.ctx.store.devices(
            area_id=apiparams.text(params, "area"), after=apiparams.cursor(params), limit=limit + 1
        )
        return _json(self._page(rows, limit, "device_id"))

    async def entities(self, request: web.Request) -> web.Response:
        params = apiparams.check_params(request.query.items(), _ENTITY_PARAMS)
        limit = apiparams.limit(params, self.ctx.max_page)
        query = EntityQuery(
            domain=apiparams.text(params, "domain"),
            area_id=apiparams.text(params, "area"),
            device_id=apiparams.text(params, "device"),
            q=apiparams.text(params, "q", apiparams.MAX_QUERY_TEXT),
            after=apiparams.cursor(params),
            limit=limit + 1,
        )
        rows = await self.ctx.store.entities(query)
        live = self.ctx.live_state
        if live is not None:
            rows = [overlay(row, live(row["entity_id"]), attributes=False) for row in rows]
        return _json(self._page(rows, limit, "entity_id"))

    async def entity(self, request: web.Request) -> web.Response:
        apiparams.check_params(request.query.items(), frozenset())
        entity_id = apiparams.entity_id(request.match_info["entity_id"])
        row = await self.ctx.store.entity(entity_id)
        live = self.ctx.live_state(entity_id) if self.ctx.live_state is not None else None
        if row is None:
            if live is None:
                return _error(404, f"no entity {entity_id!r}")
            row = live_only(live)
        shown = overlay(row, live, attributes=True)
        shown["attributes"] = self._redact(shown.get("attributes"))
        return _json(shown)

    async def history(self, request: web.Request) -> web.Response:
        params = apiparams.check_params(request.query.items(), _HISTORY_PARAMS)
        entity_id = apiparams.entity_id(request.match_info["entity_id"])
        now = time.time_ns()
        end = min(max(apiparams.time_ns(params, "end", now, now), 0), MAX_TIME_NS)
        start = min(max(apiparams.time_ns(params, "start", end - DAY_NS, now), 0), MAX_TIME_NS)
        if start >= end:
            raise BadRequest("start: must be before end")
        limit = apiparams.limit(params, HISTORY_MAX_POINTS, default=1000)
        reader = self.ctx.history
        if reader is None:
            return _error(503, "no history backend is configured")
        points = await reader.entity_history(entity_id, start, end, limit + 1)
        for point in points:
            point["fields"] = self._redact(point.get("fields"))
        truncated = len(points) > limit
        return _json(
            {
                "entity_id": entity_id,
                "source": reader.source,
                "start": ns_to_iso(start),
                "end": ns_to_iso(end),
                "count": min(len(points), limit),
                "truncated": truncated,
                "points": points[:limit],
            }
        )


def _needs_token(request: web.Request) -> str | None:
    """"api" or "page" when the matched route needs the token (when one is set), else None."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    if resource.canonical.startswith("/api/"):
        return "api"
    if resource.canonical == "/" or resource.canonical.startswith("/static/"):
        return "page"
    return None
