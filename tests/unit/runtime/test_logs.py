"""Log rendering: journal lines (priority prefix, no timestamp, one line), JSON lines, and no secrets."""

from __future__ import annotations

import io
import json

import structlog
from pydantic import SecretStr

from homeiq_daemon.runtime.logformat import journal_line_renderer
from homeiq_daemon.runtime.logs import configure_logging, get_logger, redact_secrets


def test_journal_line_format() -> None:
    line = journal_line_renderer(None, "warning", {"event": "influx.flush", "level": "warning", "points": 1000,
                                                   "error": 'HTTP 500: "boom"\nsecond line'})
    assert line == '<4>event=influx.flush points=1000 error="HTTP 500: \\"boom\\"\\nsecond line"'
    assert "\n" not in line


def test_secrets_are_redacted_by_value_type_and_key_name() -> None:
    event = redact_secrets(None, "info", {"event": "x", "token": "abc", "db_password": "pw",
                                          "value": SecretStr("hidden"), "entity_id": "sensor.a"})
    assert event == {"event": "x", "token": "**********", "db_password": "**********", "value": "**********",
                     "entity_id": "sensor.a"}


def test_json_lines_carry_timestamp_and_fields() -> None:
    out = io.StringIO()
    try:
        assert configure_logging("json", "info", stream=out) == "json"
        log = get_logger("homeiq.ha")
        log.debug("hidden.below.level")
        log.info("ha.connected", entities=3, access_token="s3cret")
    finally:
        structlog.reset_defaults()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "ha.connected"
    assert record["entities"] == 3
    assert record["access_token"] == "**********"
    assert record["level"] == "info"
    assert record["component"] == "homeiq.ha"
    assert "timestamp" in record


def test_journal_stream_format_without_socket(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    out = io.StringIO()
    try:
        fmt = configure_logging("auto", stream=out, journal_socket="/nonexistent/socket")
        structlog.get_logger().error("sink.down", error="refused")
    finally:
        structlog.reset_defaults()
    assert fmt == "journal"
    assert out.getvalue() == "<3>event=sink.down error=refused\n"
