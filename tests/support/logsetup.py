"""Logging for in-process daemons under pytest: structlog's console output with plain tracebacks.

structlog's default renderer prints tracebacks with rich and every frame's locals; the repr of one hostile value
(a state nested 1,000 deep) then takes most of a minute and ends in a RecursionError of its own. The daemon's own
configure_logging never does that; tests that run App in-process get the same plain tracebacks here.
"""

from __future__ import annotations

import logging

import structlog


def use_test_logging() -> None:
    """Plain console logging to the current sys.stdout (looked up per message, so pytest's capture works)."""
    structlog.reset_defaults()
    processors = list(structlog.get_config()["processors"])
    processors[-1] = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=processors)
    logging.getLogger().handlers.clear()
