"""The SwitchBot push receiver's path secret: checked before a byte of the body is read, never logged (a
client hanging up mid-body, a handler failure), and the body is small and bounded in size and time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from homeiq_daemon.api import pushes
from homeiq_daemon.app import App
from homeiq_daemon.sources.switchbot.readings import MAX_WEBHOOK_BYTES
from tests.integration.test_switchbot_source import PATH_SECRET, cloud, push, settings_for, source_of
from tests.support.daemon import running_app
from tests.support.fake_switchbot import FakeSwitchBotCloud

__all__ = ["cloud"]  # the fixture, shared with the source's tests

WRONG = "not-the-secret-0123456789abcdef"


def port_of(app: App) -> int:
    assert app.server is not None
    assert app.server.port is not None
    return app.server.port


async def send_head(port: int, path: str, headers: str, body: bytes = b"") -> tuple[asyncio.StreamReader,
                                                                                   asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n".encode() + body)
    await writer.drain()
    return reader, writer


async def status_of(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), 20)
    assert line, "the server closed without an answer"
    return int(line.split()[1])


async def test_wrong_secret_is_refused_before_the_body_is_read(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        # A declared body that never comes: the answer must not wait for it.
        reader, writer = await send_head(port_of(app), f"/switchbot/webhook/{WRONG}", "Content-Length: 10000\r\n")
        try:
            assert await status_of(reader) == 404
        finally:
            writer.close()
        assert source_of(app).metrics.webhooks["wrong_secret"] == 1


async def test_a_client_hanging_up_mid_body_logs_no_secret(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        with capture_logs() as logs:
            for _ in range(3):
                _, writer = await send_head(port_of(app), f"/switchbot/webhook/{PATH_SECRET}",
                                            "Content-Length: 5000\r\n", b'{"eventType": "chan')  # fmt: skip
                writer.transport.abort()  # hang up mid-body
            # A good push afterwards still works: the receiver is fine.
            reader, writer = await send_head(port_of(app), f"/switchbot/webhook/{PATH_SECRET}",
                                             f"Content-Length: {len(push('AABBCCDDEEFF', 1))}\r\n",
                                             push("AABBCCDDEEFF", 1))  # fmt: skip
            try:
                assert await status_of(reader) == 200
            finally:
                writer.close()
        assert all(PATH_SECRET not in repr(entry) for entry in logs), logs
        assert [e for e in logs if e.get("log_level") in ("error", "exception")] == []


async def test_chunked_body_over_the_cap_is_413(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        size = MAX_WEBHOOK_BYTES + 1024
        chunked = f"{size:x}\r\n".encode() + b" " * size + b"\r\n0\r\n\r\n"
        reader, writer = await send_head(port_of(app), f"/switchbot/webhook/{PATH_SECRET}",
                                         "Transfer-Encoding: chunked\r\n", chunked)  # fmt: skip
        try:
            assert await status_of(reader) == 413
        finally:
            writer.close()


async def test_a_body_that_stalls_is_cut_off(
    tmp_path: Path, cloud: FakeSwitchBotCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushes, "PUSH_BODY_TIMEOUT_S", 0.3)
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        reader, writer = await send_head(port_of(app), f"/switchbot/webhook/{PATH_SECRET}",
                                         "Content-Length: 200\r\n", b"{")  # fmt: skip
        try:
            assert await status_of(reader) == 408
        finally:
            writer.close()
