"""Logging: one structlog processor chain, configured once, with a renderer per environment.

* ``journal`` (auto under systemd, when ``JOURNAL_STREAM`` is set): ``<6>event=influx.flush points=1000``
  one line per event, syslog priority prefix, no timestamp (journald stamps it).
* ``json``: one JSON object per line with an ISO timestamp.
* ``console``: coloured, aligned, for people at a terminal.

Event names are stable dotted identifiers (``ha.connected``, ``influx.flush``); values are fields, not
text. Values of keys that look like secrets are replaced before rendering, whatever the caller passed, and
every other value goes through ``redaction.redact_text`` last (a URL's ``user:password@``, a webhook id or
a path secret never reaches the journal, even inside an exception message or a traceback).

Records of the standard library's ``logging`` (aiohttp, asyncio) go through the same chain: at most
``STDLIB_BURST`` lines per logger and message in ``STDLIB_WINDOW_S``, then one line saying how many were
left out, so a fault repeated thousands of times a second (``EMFILE`` at accept) cannot flood the disk.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from homeiq_daemon.redaction import redact_text
from homeiq_daemon.runtime.logformat import EventDict, journal_line_renderer, json_renderer

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("token", "password", "secret", "authorization", "access_token", "api_key")
REDACTED = "**********"

def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        secret_name = isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)
        if isinstance(value, SecretStr) or (secret_name and value):
            event_dict[key] = REDACTED
    return event_dict


_PLAIN = (int, float, bool, type(None))


def redact_urls(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The safety net: whatever a caller logged, no URL or path in it keeps its secret."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact_text(value)
        elif not isinstance(value, _PLAIN):
            text = str(value)
            redacted = redact_text(text)
            if redacted != text:
                event_dict[key] = redacted
    return event_dict


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


def choose_format(fmt: str, stream: TextIO) -> str:
    """The format to use: ``fmt`` unless it is "auto", then by where ``stream`` goes."""
    if fmt != "auto":
        return fmt
    if _is_journal_stream(stream):
        return "journal"
    if stream.isatty():
        return "console"
    return "json"


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    *,
    stream: TextIO | None = None,
    extra_processors: list[Callable[..., Any]] | None = None,
    journal_socket: str | None = None,
) -> str:
    """Configure structlog once for the process; returns the format chosen ("journal-native" when the
    journal format is sent as structured entries to journald's socket, see journal.py)."""
    out = stream or sys.stderr
    fmt = choose_format(fmt, out)
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
        # Plain tracebacks: a rich one prints every frame's locals, and the repr of one hostile value (a state
        # nested 1,000 deep) takes seconds on the event loop and ends in RecursionError of its own.
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, *(extra_processors or []), redact_urls, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib_logging(LEVELS[level])
    return fmt


STDLIB_BURST = 5
STDLIB_WINDOW_S = 60.0


class _StdlibBridge(logging.Handler):
    """Standard-library log records -> the structlog chain (``event=python.log``), rate-limited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}  # (logger, msg) -> (window start, count)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            key = (record.name, str(record.msg)[:200])
            now = self._clock()
            start, count = self._windows.get(key, (now, 0))
            if now - start >= STDLIB_WINDOW_S:
                if count > STDLIB_BURST:
                    self._send(record, suppressed=count - STDLIB_BURST)
                start, count = now, 0
            count += 1
            if len(self._windows) > 1000:
                self._windows.clear()
            self._windows[key] = (start, count)
            if count <= STDLIB_BURST:
                self._send(record, suppressed=0, with_traceback=count == 1)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def _send(self, record: logging.LogRecord, *, suppressed: int, with_traceback: bool = False) -> None:
        level = record.levelname.lower()
        method = getattr(structlog.get_logger(), level if level in LEVELS else "error")
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()[:500]}
        if suppressed:
            fields["suppressed"] = suppressed
            fields["window_s"] = STDLIB_WINDOW_S
        if with_traceback and record.exc_info:
            fields["exc_info"] = record.exc_info
        elif record.exc_info and record.exc_info[1] is not None:
            fields["error"] = repr(record.exc_info[1])[:300]
        method("python.log", **fields)


def _bridge_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibBridge):
            root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    root.setLevel(max(level, logging.INFO))  # aiohttp's and asyncio's debug chatter stays out


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A component's logger: its events carry ``component=<name>`` (in JSON and console output, and as the
    journal field ``HOMEIQ_COMPONENT``: ``journalctl -u homeiq HOMEIQ_COMPONENT=homeiq.delivery``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
