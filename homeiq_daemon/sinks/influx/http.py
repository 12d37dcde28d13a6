"""What the InfluxDB writer and history reader share: credentials, the HTTP session and its life."""

from __future__ import annotations

import base64

import aiohttp

from homeiq_daemon.config import InfluxDBSettings


def credentials(settings: InfluxDBSettings) -> dict[str, str]:
    """The ``Authorization`` header: 2.x a token, 1.x HTTP basic auth when a user is set (UTF-8, which is
    what influxd compares the password with); none without credentials."""
    if settings.api_version == 2 and settings.token is not None:
        return {"Authorization": f"Token {settings.token.get_secret_value()}"}
    if settings.api_version == 1 and settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        pair = base64.b64encode(f"{settings.username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    return {}


def open_session(settings: InfluxDBSettings) -> aiohttp.ClientSession:
    """One session for every request to this InfluxDB (writes, probes, CREATE DATABASE, queries), with the
    credentials and the user agent on each of them."""
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s, sock_connect=min(5.0, settings.timeout_s))
    connector = aiohttp.TCPConnector(limit=4, ssl=settings.verify_ssl)
    headers = {"User-Agent": "homeiq-daemon", **credentials(settings)}
    return aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers)


class InfluxClient:
    """The session's life, shared by the writer and the history reader: ``start`` opens it, ``close`` ends it."""

    def __init__(self, settings: InfluxDBSettings) -> None:
        assert settings.url is not None
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = open_session(self._settings)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
