"""A loopback fake of the SwitchBot Cloud API v1.1, for fault injection.

It speaks the API as its README documents it: ``GET /v1.1/devices``, ``GET /v1.1/devices/{id}/status``,
``POST /v1.1/webhook/{setupWebhook,queryWebhook,deleteWebhook}``, answers ``{"statusCode", "body", "message"}``
and, for a bad token or signature, HTTP 401 ``{"message": "Unauthorized"}``. Every request's signature is
checked with the ``switchbot-api`` package's signing code (tests/support/switchbot_oracle.py), never ours.

Faults: ``fail_next`` (HTTP status codes or "timeout" for the next requests), ``quota_after`` (after that
many requests, the daily limit in one of the forms SwitchBot answers it with, ``quota_style``):

* ``"401"``: HTTP 401 ``{"message": "Unauthorized"}`` -- the README's "Request limit": "Going over that limit
  will return 'Unauthorized.'";
* ``"190"``: HTTP 200 ``{"statusCode":190,"body":{},"message":"Requests reached the daily limit"}`` -- the
  body SwitchBotAPI issue #365 reports verbatim (the README documents 190 only as "System error");
* ``"429"``: HTTP 429 -- in the README's table of standard HTTP errors ("Too Many Requests"), with no body
  documented, so the fake sends a plain-text one the daemon must not need to parse.

``README_PUSHES`` holds the README's webhook samples ("Receive events from webhook"), as documented.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.support.switchbot_oracle import verify

# Shapes from the README's device list and status tables (values are the README's samples where it has them).
DEVICES: list[dict[str, Any]] = [
    {"deviceId": "C271111EC0AB", "deviceName": "Living Room Meter", "deviceType": "Meter",
     "enableCloudService": True, "hubDeviceId": "FA7310762361"},
    {"deviceId": "D1A2B3C4D5E6", "deviceName": "Balcony", "deviceType": "MeterPlus", "enableCloudService": True,
     "hubDeviceId": "FA7310762361"},
    {"deviceId": "6055F92FCFD2", "deviceName": "Coffee Machine", "deviceType": "Plug Mini (US)",
     "enableCloudService": True, "hubDeviceId": "000000000000"},
    {"deviceId": "FA7310762361", "deviceName": "Hub 2 Office", "deviceType": "Hub 2", "enableCloudService": True,
     "hubDeviceId": "000000000000"},
    {"deviceId": "E2F6032048AB", "deviceName": "Hub Mini Hall", "deviceType": "Hub Mini",
     "enableCloudService": False, "hubDeviceId": "000000000000"},
]  # fmt: skip
REMOTES: list[dict[str, Any]] = [
    {"deviceId": "02-202008110034-13", "deviceName": "Living Room TV", "remoteType": "TV",
     "hubDeviceId": "FA7310762361"},
]  # fmt: skip
STATUSES: dict[str, dict[str, Any]] = {
    "C271111EC0AB": {"deviceId": "C271111EC0AB", "deviceType": "Meter", "hubDeviceId": "FA7310762361",
                     "humidity": 52, "temperature": 26.1, "battery": 100, "version": "V4.2"},
    "D1A2B3C4D5E6": {"deviceId": "D1A2B3C4D5E6", "deviceType": "MeterPlus", "hubDeviceId": "FA7310762361",
                     "battery": 60, "version": "V4.2", "temperature": -3.5, "humidity": 88},
    "6055F92FCFD2": {"deviceId": "6055F92FCFD2", "deviceType": "Plug Mini (US)", "hubDeviceId": "000000000000",
                     "voltage": 121.2, "version": "V3.1-6.3", "weight": 45.7, "electricityOfDay": 118,
                     "electricCurrent": 377.0},
    "FA7310762361": {"deviceId": "FA7310762361", "deviceType": "Hub 2", "hubDeviceId": "FA7310762361",
                     "temperature": 21.4, "lightLevel": 12, "version": "V4.2", "humidity": 41},
}  # fmt: skip

# The README's push samples, with DEVICE_MAC_ADDR filled in (Meter Plus pushes also say "WoMeter").
README_PUSHES: dict[str, dict[str, Any]] = {
    "WoMeter": {"eventType": "changeReport", "eventVersion": "1",
                "context": {"deviceType": "WoMeter", "deviceMac": "C271111EC0AB", "temperature": 22.5,
                            "scale": "CELSIUS", "humidity": 31, "battery": 100, "timeOfSample": 123456789}},
    "WoHub2": {"eventType": "changeReport", "eventVersion": "1",
               "context": {"deviceType": "WoHub2", "deviceMac": "FA7310762361", "temperature": 13, "humidity": 18,
                           "lightLevel": 19, "scale": "CELSIUS", "timeOfSample": 123456789}},
    "WoPlugUS": {"eventType": "changeReport", "eventVersion": "1",
                 "context": {"deviceType": "WoPlugUS", "deviceMac": "6055F92FCFD2", "powerState": "ON",
                             "timeOfSample": 123456789}},
}  # fmt: skip

QuotaStyle = Literal["190", "401", "429"]


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    signature_problem: str | None


@dataclass
class FakeSwitchBotCloud:
    token: str = "fake-open-token-0123456789abcdef"
    secret: str = "fake-secret-key-0123"
    devices: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEVICES))
    remotes: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(REMOTES))
    statuses: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(STATUSES))
    quota_after: int | None = None
    quota_style: QuotaStyle = "190"
    hang_s: float = 30.0
    requests: list[SeenRequest] = field(default_factory=list)
    fail_next: list[int | str] = field(default_factory=list)
    webhook_urls: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bad_signatures(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.signature_problem is not None]

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSwitchBotCloud:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the API --------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "t", "nonce", "sign")}
        problem = verify(dict(request.headers), self.token, self.secret)
        self.requests.append(SeenRequest(request.method, request.path, headers, body, problem))
        if problem is not None:
            return self._unauthorized()
        if self.fail_next:
            fault = self.fail_next.pop(0)
            if fault == "timeout":
                await asyncio.sleep(self.hang_s)
            return web.Response(status=int(fault), text="upstream trouble")
        if self.quota_after is not None and len(self.requests) > self.quota_after:
            if self.quota_style == "401":
                return self._unauthorized()
            if self.quota_style == "429":
                return web.Response(status=429, text="Too Many Requests")
            return self._answer(190, {}, "Requests reached the daily limit")
        return self._route(request.method, request.path, body)

    def _route(self, method: str, path: str, body: Any) -> web.Response:
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["v1.1", "devices"]:
            return self._answer(100, {"deviceList": self.devices, "infraredRemoteList": self.remotes})
        if method == "GET" and len(parts) == 4 and parts[:2] == ["v1.1", "devices"] and parts[3] == "status":
            status = self.statuses.get(parts[2])
            if status is None:
                return self._answer(152, {}, "device not found")
            return self._answer(100, status)
        if method == "POST" and len(parts) == 3 and parts[:2] == ["v1.1", "webhook"] and isinstance(body, dict):
            return self._webhook(parts[2], body)
        return web.json_response({"message": "Not Found"}, status=404)

    def _webhook(self, action: str, body: dict[str, Any]) -> web.Response:
        if action == "setupWebhook" and body.get("action") == "setupWebhook" and body.get("deviceList") == "ALL":
            self.webhook_urls = [str(body["url"])]
            return self._answer(100, {}, "")
        if action == "queryWebhook" and body.get("action") == "queryUrl":
            return self._answer(100, {"urls": self.webhook_urls}, "")
        if action == "queryWebhook" and body.get("action") == "queryDetails":
            asked = [u for u in body.get("urls", []) if u in self.webhook_urls]
            details = [{"url": u, "createTime": 1700000000000, "lastUpdateTime": 1700000000000,
                        "deviceList": "ALL", "enable": True} for u in asked]  # fmt: skip
            return self._answer(100, details, "")
        if action == "deleteWebhook" and body.get("action") == "deleteWebhook":
            if body.get("url") not in self.webhook_urls:
                return self._answer(190, {}, "webhook url does not exist")
            self.webhook_urls.remove(body["url"])
            return self._answer(100, {}, "")
        return self._answer(190, {}, "command format is invalid")

    @staticmethod
    def _answer(code: int, body: Any, message: str = "success") -> web.Response:
        return web.json_response({"statusCode": code, "body": body, "message": message})

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response({"message": "Unauthorized"}, status=401)
