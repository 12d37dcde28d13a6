"""Dead-letter files: lines InfluxDB refused for their content, kept so a person can look and re-send.

``<state_dir>/deadletter/YYYY-MM-DD.lp`` holds line protocol, each rejected line preceded by a comment
(``# <UTC time> <reason>``), so ``grep -v '^#' FILE | curl --data-binary @- …/write`` re-sends them after
fixing the cause. Bounded: the oldest files are deleted beyond ``max_bytes``.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.deadletter")

# The HA schema's two tags, in a line's tag section (before the first unescaped space).
_TAG = re.compile(r"(?:^|,)(domain|entity_id)=((?:[^,\\ ]|\\.)*)")


def line_entity_id(line: str) -> str | None:
    """``sensor.kitchen`` from a line with tags ``domain=sensor,entity_id=kitchen`` (None when it has not both)."""
    end = 0
    while end < len(line):  # the measurement and tags end at the first unescaped space
        if line[end] == "\\":
            end += 2
            continue
        if line[end] == " ":
            break
        end += 1
    found = {key: value.replace("\\", "") for key, value in _TAG.findall(line[:end])}
    if "domain" in found and "entity_id" in found:
        return f"{found['domain']}.{found['entity_id']}"
    return None


class DeadLetters:
    def __init__(self, directory: Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.count = 0

    def add(self, line: str, reason: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.gmtime()
        path = self.directory / time.strftime("%Y-%m-%d.lp", now)
        reason_one_line = " ".join(reason.split())
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', now)} {reason_one_line}\n{line}\n")
        self.count += 1
        entity_id = line_entity_id(line)
        extra = {"entity_id": entity_id} if entity_id else {}
        log.warning("influx.dead_letter", file=str(path), reason=reason_one_line[:300], **extra)
        self._trim()

    def add_batch(self, body: bytes, points: int, reason: str) -> None:
        """A whole batch the sink could not take (see delivery/poison.py), under one comment line."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.gmtime()
        path = self.directory / time.strftime("%Y-%m-%d.lp", now)
        reason_one_line = " ".join(reason.split())
        text = body.decode("utf-8", errors="replace")
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', now)} batch of {points} points: {reason_one_line}\n")
            fh.write(text if text.endswith("\n") or not text else text + "\n")
        self.count += points
        self._trim()

    def _trim(self) -> None:
        files = sorted(self.directory.glob("*.lp"))
        total = sum(f.stat().st_size for f in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
