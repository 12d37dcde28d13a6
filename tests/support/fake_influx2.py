"""A recorded-contract fake of InfluxDB 2.x's write endpoint (``POST /api/v2/write``), for what Debian's
influxd 1.6 cannot serve. Bodies are parsed with the tests' own line-protocol parser (tests/support/
lineproto.py), never with the daemon's. Status codes, headers and JSON error bodies follow InfluxDB 2.x OSS
(http/write_handler.go, http/points/points_parser.go and kit/transport/http/error_handler.go, whose
``{"code", "message"}`` body and ``X-Platform-Error-Code`` header every error carries; the status per code as
documented in "Troubleshoot issues writing data"):

* 204 when every point was written;
* 400 ``{"code":"invalid","message":"unable to parse '<line>': <reason>"}`` (one entry per bad line, joined
  by newlines) when any line does not parse: the whole batch is rejected, nothing is written; also for an
  empty body (``writing requires points``);
* 401 ``{"code":"unauthorized","message":"unauthorized access"}`` for a missing or wrong ``Token``;
* 404 ``{"code":"not found","message":"bucket \"b\" not found"}`` for an unknown bucket or organisation;
* 413 ``{"code":"request too large","message":"unable to read data: points batch is too large"}`` above
  ``max_body_bytes`` (after gzip inflation), nothing written;
* 422 ``{"code":"unprocessable entity","message":"failure writing points to database: partial write: field
  type conflict: ... dropped=N"}`` when some points conflict with a field's type: the others are written;
* 429 ``too many requests`` / 503 ``unavailable`` with ``Retry-After`` when told to (``fail_next``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.lineproto import FieldValue, parse_lines_lenient

_CODES = {400: "invalid", 401: "unauthorized", 404: "not found", 413: "request too large",
          422: "unprocessable entity", 429: "too many requests", 503: "unavailable"}


def _kind(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


@dataclass
class FakeInflux2:
    token: str = "tok"
    org: str = "home"
    bucket: str = "ha"
    points: dict[tuple[Any, ...], dict[str, FieldValue]] = field(default_factory=dict)
    field_types: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    max_body_bytes: int | None = None  # a batch size limit as a configured server has one (None: none)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v2/write", self._write)
        app.router.add_get("/ping", self._ping)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Influxdb-Version": "v2.7.10"})

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        code = _CODES[status]
        return web.json_response({"code": code, "message": message}, status=status,
                                 headers={**(headers or {}), "X-Platform-Error-Code": code})

    async def _write(self, request: web.Request) -> web.Response:
        raw = await request.read()  # aiohttp has already inflated a gzip body (and fails on a broken one)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        self.requests.append({"query": dict(request.query), "headers": dict(request.headers), "body": raw})
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return self._error(status, "try again later", headers)
        if request.headers.get("Authorization") != f"Token {self.token}":
            return self._error(401, "unauthorized access")
        if request.query.get("precision", "ns") not in ("ns", "us", "ms", "s"):
            return self._error(400, "invalid precision; valid precision units are ns, us, ms, and s")
        if request.query.get("org") != self.org:
            return self._error(404, f'organization name "{request.query.get("org")}" not found')
        if request.query.get("bucket") != self.bucket:
            return self._error(404, f'bucket "{request.query.get("bucket")}" not found')
        if self.max_body_bytes is not None and len(raw) > self.max_body_bytes:
            return self._error(413, "unable to read data: points batch is too large")
        if not raw:
            return self._error(400, "writing requires points")
        assert request.query.get("precision") == "ns", "the daemon writes nanoseconds"
        text = raw.decode("utf-8", errors="replace")
        points, bad = parse_lines_lenient(text)
        if bad:
            lines = text.split("\n")
            return self._error(400, "\n".join(f"unable to parse '{lines[n - 1]}': {why.partition(': ')[2] or why}"
                                              for n, why in bad))
        conflicts: list[str] = []
        batch_types: dict[tuple[str, str], str] = {}
        for point in points:
            conflict = None
            for key, value in point.fields.items():
                known = self.field_types.get((point.measurement, key)) or batch_types.get((point.measurement, key))
                if known is not None and known != _kind(value):
                    conflict = (f'field type conflict: input field "{key}" on measurement "{point.measurement}" '
                                f"is type {_kind(value)}, already exists as type {known}")
            if conflict:
                conflicts.append(conflict)
                continue
            for key, value in point.fields.items():
                batch_types[(point.measurement, key)] = _kind(value)
            series = (point.measurement, tuple(sorted(point.tags.items())), point.time_ns)
            self.points.setdefault(series, {}).update(point.fields)
        self.field_types.update(batch_types)
        if conflicts:
            return self._error(422, f"failure writing points to database: partial write: {conflicts[0]} "
                                    f"dropped={len(conflicts)}")
        return web.Response(status=204)
