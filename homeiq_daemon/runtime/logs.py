"""Logging: one structlog processor chain, configured once, with a renderer per environment.

* ``journal`` (auto under systemd, when ``JOURNAL_STREAM`` is set): ``<6>event=influx.flush points=1000``
  one line per event, syslog priority prefix, no timestamp (journald stamps it).
* ``json``: one JSON object per line with an ISO timestamp.
* ``console``: coloured, aligned, for people at a terminal.

Event names are stable dotted identifiers (``ha.connected``, ``influx.flush``); values are fields, not
text. Values of keys that look like secrets are replaced before rendering, whatever the caller passed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from pydantic import SecretStr

from homeiq_daemon.config import LogSettings

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2, "exception": 3}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("token", "password", "secret", "authorization", "access_token", "api_key")
REDACTED = "**********"

EventDict = MutableMapping[str, Any]


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        secret_name = isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)
        if isinstance(value, SecretStr) or (secret_name and value):
            event_dict[key] = REDACTED
    return event_dict


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(ch in text for ch in ' "=\n\r\t\\') and text.isprintable():
        return text
    # Quote, and keep the line one line: journald would split a multi-line message into several entries.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


def journal_line_renderer(_: Any, method_name: str, event_dict: EventDict) -> str:
    level = str(event_dict.pop("level", method_name))
    prio = PRIORITY.get(level, 6)
    event = event_dict.pop("event", "")
    parts = [f"<{prio}>event={_format_value(event)}"]
    parts.extend(f"{key}={_format_value(value)}" for key, value in event_dict.items())
    return " ".join(parts)


def json_renderer(_: Any, __: str, event_dict: EventDict) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def _is_journal_stream(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd connected (JOURNAL_STREAM is ``dev:inode``);
    a child that inherited the variable but writes elsewhere (a pipe, a terminal) gets another format."""
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # not a real file (tests, wrappers): trust the variable
    try:
        st = os.fstat(fileno)
    except OSError:
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def choose_format(settings: LogSettings, stream: TextIO) -> str:
    if settings.format != "auto":
        return settings.format
    if _is_journal_stream(stream):
        return "journal"
    if stream.isatty():
        return "console"
    return "json"


def configure_logging(
    settings: LogSettings,
    stream: TextIO | None = None,
    extra_processors: list[Callable[..., Any]] | None = None,
    journal_socket: str | None = None,
) -> str:
    """Configure structlog once for the process; returns the format chosen ("journal-native" when the
    journal format is sent as structured entries to journald's socket, see journal.py)."""
    out = stream or sys.stderr
    fmt = choose_format(settings, out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        redact_secrets,
    ]
    renderer: Callable[..., Any]
    logger_factory: Callable[..., Any] = structlog.PrintLoggerFactory(file=out)
    if fmt == "journal":
        shared += [structlog.processors.format_exc_info]
        renderer = journal_line_renderer
        from homeiq_daemon.runtime import journal  # noqa: PLC0415 - only under systemd

        socket_path = journal_socket or journal.JOURNAL_SOCKET
        if journal.journal_available(socket_path):
            renderer = journal.render_entry
            logger_factory = journal.JournalLoggerFactory(journal.JournalSender(socket_path), fallback=out)
            fmt = "journal-native"
    elif fmt == "json":
        shared += [structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.format_exc_info]
        renderer = json_renderer
    else:
        shared += [structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False)]
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, *(extra_processors or []), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[settings.level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    return fmt


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A module's logger. ``name`` documents the owner; event names already carry it (``influx.flush``)."""
    del name
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger()
    return logger
