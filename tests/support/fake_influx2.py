"""A recorded-contract fake of InfluxDB 2.x's write endpoint (``POST /api/v2/write``), for what Debian's
influxd 1.6 cannot serve. Status codes, headers and JSON error bodies follow InfluxDB 2.x:

* 204 on success;
* 401 ``{"code":"unauthorized","message":"unauthorized access"}`` for a missing/wrong ``Token``;
* 404 ``{"code":"not found","message":"bucket \\"b\\" not found"}`` for an unknown bucket;
* 400 ``{"code":"invalid","message":"unable to parse '…': …"}`` when no line parses;
* 422 ``{"code":"unprocessable entity","message":"failure writing points to database: partial write: field
  type conflict: …"}`` — the other lines of the batch are written (as InfluxDB does);
* 429/503 with ``Retry-After`` when told to (``fail_next``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from homeiq_daemon.sinks.lineprotocol import FieldValue, LineProtocolError, parse_line, split_lines


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
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status, headers=headers)

    async def _write(self, request: web.Request) -> web.Response:
        raw = await request.read()  # aiohttp has already inflated a gzip body (and fails on a broken one)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        self.requests.append({"query": dict(request.query), "headers": dict(request.headers), "body": raw})
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return self._error(status, "too many requests" if status == 429 else "unavailable",
                               "try again later", headers)
        if request.headers.get("Authorization") != f"Token {self.token}":
            return self._error(401, "unauthorized", "unauthorized access")
        if request.query.get("org") != self.org:
            return self._error(404, "not found", f'organization name "{request.query.get("org")}" not found')
        if request.query.get("bucket") != self.bucket:
            return self._error(404, "not found", f'bucket "{request.query.get("bucket")}" not found')
        if request.query.get("precision") != "ns":
            return self._error(400, "invalid", "precision must be ns for this test")
        lines = [line for line in split_lines(raw.decode()) if line and not line.startswith("#")]
        parse_errors: list[str] = []
        conflicts: list[str] = []
        written = 0
        for line in lines:
            try:
                parsed = parse_line(line)
            except LineProtocolError as exc:
                parse_errors.append(f"unable to parse '{line[:60]}': {exc}")
                continue
            conflict = None
            for key, value in parsed.fields.items():
                known = self.field_types.get((parsed.measurement, key))
                if known is not None and known != _kind(value):
                    conflict = (f'field type conflict: input field "{key}" on measurement "{parsed.measurement}" '
                                f"is type {_kind(value)}, already exists as type {known}")
            if conflict:
                conflicts.append(conflict)
                continue
            for key, value in parsed.fields.items():
                self.field_types[(parsed.measurement, key)] = _kind(value)
            series = (parsed.measurement, tuple(sorted(parsed.tags.items())), parsed.time_ns)
            self.points.setdefault(series, {}).update(parsed.fields)
            written += 1
        if parse_errors and not written and not conflicts:
            return self._error(400, "invalid", parse_errors[0])
        if conflicts or parse_errors:
            reason = (conflicts or parse_errors)[0]
            return self._error(422, "unprocessable entity",
                               f"failure writing points to database: partial write: {reason} "
                               f"dropped={len(conflicts) + len(parse_errors)}")
        return web.Response(status=204)
