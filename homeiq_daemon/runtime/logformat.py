"""How one log event is written: journald's ``<priority>key=value`` line and JSON. Pure code.

Shared by logs.py (the processor chain) and journal.py (native journald entries), so neither imports the
other's module at load time.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2, "exception": 3}

EventDict = MutableMapping[str, Any]


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
    event_dict.pop("component", None)  # the event name starts with it; the journal has it as HOMEIQ_COMPONENT
    parts = [f"<{prio}>event={_format_value(event)}"]
    parts.extend(f"{key}={_format_value(value)}" for key, value in event_dict.items())
    return " ".join(parts)


def json_renderer(_: Any, __: str, event_dict: EventDict) -> str:
    return orjson.dumps(event_dict, default=str).decode()
