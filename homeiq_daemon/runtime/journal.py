"""journald's native protocol: each log event becomes one structured journal entry.

An entry is a datagram of fields on ``/run/systemd/journal/socket``: ``NAME=value\\n`` when the value has
no newline, else ``NAME\\n`` + the value's length as a 64-bit little-endian integer + the value + ``\\n``.
An entry too large for one datagram is written to a sealed memfd whose descriptor is sent instead.
(systemd.io/JOURNAL_NATIVE_PROTOCOL documents both.)

Every structlog key becomes a ``HOMEIQ_<KEY>`` field (``event`` -> ``HOMEIQ_EVENT``, ``entity_id`` ->
``HOMEIQ_ENTITY_ID``; a list of entity ids becomes that field once per entity), besides ``MESSAGE`` (the
same one-line text the stderr fallback prints, plus any traceback), ``PRIORITY`` and ``SYSLOG_IDENTIFIER``.
So ``journalctl -u homeiq HOMEIQ_EVENT=influx.flush`` and ``journalctl -o json`` work. When the socket is
missing or a send fails, the line goes to stderr in the ``<priority>event=… key=…`` form, which journald
(or a terminal) reads just as well.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import struct
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson

from homeiq_daemon.runtime.logformat import PRIORITY, EventDict, journal_line_renderer

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "homeiq"
FIELD_PREFIX = "HOMEIQ_"
MAX_VALUE_BYTES = 64 * 1024  # per field: a log entry is no place for a whole payload
# Keys whose list values become the same field repeated (journald keeps every one, journalctl matches any).
REPEATED_FIELDS = frozenset({"entity_id"})
_NAME_OK = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_NAME_BAD_CHARS = re.compile(r"[^A-Z0-9_]")
_LE64 = struct.Struct("<Q")
_SNDBUF_BYTES = 8 * 1024 * 1024


# --- sans-IO: fields <-> datagram ------------------------------------------------------------------------


def field_name(key: str) -> str:
    """A structlog key as a journal field name (upper case, [A-Z0-9_], at most 64 characters)."""
    name = FIELD_PREFIX + _NAME_BAD_CHARS.sub("_", key.upper())
    return name[:64]


def encode_entry(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    out = bytearray()
    for name, value in fields:
        if not _NAME_OK.match(name):
            raise ValueError(f"invalid journal field name {name!r}")
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if len(data) > MAX_VALUE_BYTES:
            data = data[: MAX_VALUE_BYTES - 3] + b"..."
        if b"\n" in data:
            out += name.encode() + b"\n" + _LE64.pack(len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def decode_entry(data: bytes) -> list[tuple[str, bytes]]:
    """Parse a native-protocol datagram (as journald does); raises ValueError on malformed input."""
    fields: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline < 0:
            raise ValueError("entry does not end with a newline")
        line = data[pos:newline]
        eq = line.find(b"=")
        if eq >= 0:
            fields.append((line[:eq].decode("ascii"), line[eq + 1 :]))
            pos = newline + 1
            continue
        start = newline + 1
        if start + 8 > len(data):
            raise ValueError("binary field without its length")
        (size,) = _LE64.unpack_from(data, start)
        end = start + 8 + size
        if end >= len(data) or data[end : end + 1] != b"\n":
            raise ValueError("binary field is not followed by a newline")
        fields.append((line.decode("ascii"), data[start + 8 : end]))
        pos = end + 1
    return fields


def _field_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def entry_fields(method_name: str, event_dict: EventDict) -> list[tuple[str, str]]:
    """A processed structlog event -> journal fields. Consumes ``event_dict``."""
    exception = event_dict.pop("exception", None)
    level = str(event_dict.get("level", method_name))
    own: list[tuple[str, str]] = []
    for key, value in event_dict.items():
        if key == "level":
            continue
        if key in REPEATED_FIELDS and isinstance(value, list | tuple):  # one field per entity: each one matches
            own.extend((field_name(key), _field_value(item)) for item in value)
        else:
            own.append((field_name(str(key)), _field_value(value)))
    line = journal_line_renderer(None, method_name, event_dict)  # "<6>event=… key=…"; pops level and event
    message = line[line.index(">") + 1 :]
    if exception:
        message = f"{message}\n{exception}"  # journalctl shows the traceback under the line, indented
    return [
        ("MESSAGE", message),
        ("PRIORITY", str(PRIORITY.get(level, 6))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        *own,
    ]


def render_entry(_: Any, method_name: str, event_dict: EventDict) -> bytes:
    """structlog's last processor under journald: the datagram itself."""
    return encode_entry(entry_fields(method_name, event_dict))


# --- IO: the socket ------------------------------------------------------------------------------------


def journal_available(path: str = JOURNAL_SOCKET) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class JournalSender:
    """Sends entries to journald; returns False instead of raising when it cannot."""

    def __init__(self, path: str = JOURNAL_SOCKET, *, sndbuf_bytes: int = _SNDBUF_BYTES) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Big entries (tracebacks) fit a datagram when the buffer allows it (the kernel caps the request at
        # net.core.wmem_max); bigger ones go through a memfd.
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes)
        # A journald that stops reading must not stall the event loop for long.
        self._sock.settimeout(0.5)
        self.sent = 0
        self.failed = 0

    def send(self, entry: bytes) -> bool:
        try:
            self._sock.sendto(entry, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                self.failed += 1
                return False
            if not self._send_memfd(entry):
                self.failed += 1
                return False
        self.sent += 1
        return True

    def _send_memfd(self, entry: bytes) -> bool:
        try:
            fd = os.memfd_create("homeiq-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            return False
        try:
            os.write(fd, entry)
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = array.array("i", [fd]).tobytes()
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self.path)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        self._sock.close()


class JournalLogger:
    """structlog logger: sends rendered entries; on failure prints the equivalent line to ``fallback``."""

    def __init__(self, sender: JournalSender, fallback: TextIO) -> None:
        self.sender = sender
        self.fallback = fallback

    def msg(self, entry: bytes) -> None:
        if self.sender.send(entry):
            return
        fields = dict(decode_entry(entry))
        priority = fields.get("PRIORITY", b"6").decode()
        message = fields.get("MESSAGE", b"").decode("utf-8", "replace").replace("\n", "\\n")
        with contextlib.suppress(OSError, ValueError):
            print(f"<{priority}>{message}", file=self.fallback, flush=True)

    debug = info = warning = warn = error = err = critical = fatal = exception = failure = log = msg


class JournalLoggerFactory:
    def __init__(self, sender: JournalSender, fallback: TextIO | None = None) -> None:
        self.sender = sender
        self.fallback = fallback or sys.stderr

    def __call__(self, *args: Any) -> JournalLogger:
        return JournalLogger(self.sender, self.fallback)
