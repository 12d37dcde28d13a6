"""The logging chain's safety nets: no URL secret reaches a log line whoever logged it (a field, an exception
message, a traceback, a standard-library logger), and a standard-library message repeated thousands of times
(``EMFILE`` at accept) is rate-limited instead of flooding the journal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from homeiq_daemon.runtime import logs
from homeiq_daemon.runtime.logs import STDLIB_BURST, configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logs._StdlibBridge):
                root.removeHandler(handler)


def _records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_url_credentials_and_path_secrets_never_reach_a_line(captured: io.StringIO) -> None:
    log = structlog.get_logger()
    log.warning("ha.disconnected", url="ws://admin:hunter2@ha:8123/api/websocket", attempt=1)
    log.error("http.failed", path="/switchbot/%77ebhook/PATHSECRET0123456", detail={"u": "http://a:pw9@x/"})
    try:
        raise ValueError("cannot reach http://user:tracepass@db:8086/write?p=qpass")
    except ValueError:
        log.exception("influx.crashed")
    text = captured.getvalue()
    for secret in ("hunter2", "PATHSECRET0123456", "pw9", "tracepass", "qpass"):
        assert secret not in text, secret
    first, second, third = _records(captured)
    assert first["url"] == "ws://**********@ha:8123/api/websocket"
    assert second["path"] == "/switchbot/webhook/**********"
    assert "http://**********@db:8086/write?p=**********" in str(third["exception"])


def test_stdlib_records_go_through_the_chain_redacted(captured: io.StringIO) -> None:
    logging.getLogger("aiohttp.client").warning("retrying http://u:stdlibpass@h/api/webhook/hookid123")
    [record] = _records(captured)
    assert record["event"] == "python.log"
    assert record["logger"] == "aiohttp.client"
    assert record["message"] == "retrying http://**********@h/api/webhook/**********"


def test_a_repeated_stdlib_error_is_rate_limited(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    [bridge] = [h for h in root.handlers if isinstance(h, logs._StdlibBridge)]
    now = [0.0]
    monkeypatch.setattr(bridge, "_clock", lambda: now[0])
    asyncio_log = logging.getLogger("asyncio")
    error = OSError(24, "Too many open files")
    for _ in range(5000):
        asyncio_log.error("socket.accept() out of system resource", exc_info=(OSError, error, None))
    lines = _records(captured)
    assert len(lines) == STDLIB_BURST
    assert "exception" in lines[0]  # the first one carries the traceback, the next ones one line each
    assert all("exception" not in line for line in lines[1:])
    now[0] = logs.STDLIB_WINDOW_S + 1
    asyncio_log.error("socket.accept() out of system resource", exc_info=(OSError, error, None))
    summary, again = _records(captured)[STDLIB_BURST:]
    assert summary["suppressed"] == 5000 - STDLIB_BURST
    assert again["message"] == "socket.accept() out of system resource"
