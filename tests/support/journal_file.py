"""The daemon's journal entries as a real journal file, for running documented ``journalctl`` recipes.

``JournalCollector`` stands where /run/systemd/journal/socket would and keeps every datagram (or memfd) the
daemon sends. ``write_journal_file`` adds what journald itself adds to each entry (``_SYSTEMD_UNIT``,
``_BOOT_ID``, ``_PID``, the timestamps), writes the entries in journald's export format and has
``systemd-journal-remote`` (Debian package ``systemd-journal-remote``) turn them into a journal file, which
the real ``journalctl --file`` reads. ``recipes`` finds the ``journalctl`` command lines in the docs.
"""

from __future__ import annotations

import array
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from homeiq_daemon.runtime import journal

JOURNAL_REMOTE = "/usr/lib/systemd/systemd-journal-remote"
_LE64 = struct.Struct("<Q")


class JournalCollector:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.settimeout(0.2)
        self.entries: list[list[tuple[str, bytes]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
            except TimeoutError:
                continue
            except OSError:
                return
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    (fd,) = array.array("i", payload[:4])
                    try:
                        data = os.pread(fd, os.fstat(fd).st_size, 0)
                    finally:
                        os.close(fd)
            self.entries.append(journal.decode_entry(data))

    def events(self) -> list[str]:
        return [v.decode() for entry in self.entries for k, v in entry if k == "HOMEIQ_EVENT"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _export_entry(fields: list[tuple[str, bytes]], *, realtime_us: int, boot_id: str, pid: int) -> bytes:
    out = bytearray()
    trusted = [
        ("__REALTIME_TIMESTAMP", str(realtime_us).encode()),
        ("__MONOTONIC_TIMESTAMP", str(realtime_us).encode()),
        ("_BOOT_ID", boot_id.encode()),
        ("_PID", str(pid).encode()),
        ("_SYSTEMD_UNIT", b"homeiq.service"),
        ("_TRANSPORT", b"journal"),
    ]
    for name, value in trusted + fields:
        if b"\n" in value:
            out += name.encode() + b"\n" + _LE64.pack(len(value)) + value + b"\n"
        else:
            out += name.encode() + b"=" + value + b"\n"
    return bytes(out) + b"\n"


def current_boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")


def write_journal_file(
    path: Path, previous_boot: list[list[tuple[str, bytes]]], this_boot: list[list[tuple[str, bytes]]]
) -> None:
    """Entries of an earlier boot (an hour ago) and of this one (ending now) in one journal file."""
    now_us = time.time_ns() // 1000
    earlier_boot = "0" * 31 + "1"
    chunks = []
    start = now_us - 3_600_000_000
    for index, entry in enumerate(previous_boot):
        chunks.append(_export_entry(entry, realtime_us=start + index, boot_id=earlier_boot, pid=100))
    start = now_us - len(this_boot)  # ends now: `--since today` and `--since "1 hour ago"` include it
    for index, entry in enumerate(this_boot):
        chunks.append(_export_entry(entry, realtime_us=start + index, boot_id=current_boot_id(), pid=200))
    result = subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "-"], input=b"".join(chunks), capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")


_INLINE = re.compile(r"`(journalctl [^`]+)`")


def recipes(*docs: Path) -> list[tuple[str, str]]:
    """(where, command line) for each ``journalctl`` line in the docs' sh blocks (continuations joined, the
    trailing comment dropped) and each inline `journalctl …` in the prose."""
    found: list[tuple[str, str]] = []
    for doc in docs:
        lines = doc.read_text().splitlines()
        in_block = False
        pending = ""
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                in_block = line.strip() in ("```sh", "```bash", "```console")
                continue
            if in_block:
                text = pending + line.strip()
                if text.endswith("\\"):
                    pending = text[:-1] + " "
                    continue
                pending = ""
                if text.startswith("journalctl "):
                    found.append((f"{doc.name}:{number}", text))
            else:
                found.extend((f"{doc.name}:{number}", m.group(1)) for m in _INLINE.finditer(line))
    return found
