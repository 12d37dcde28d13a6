"""Dead-letter files: lines InfluxDB refused for their content, kept so a person can look and re-send.

``<state_dir>/deadletter/YYYY-MM-DD.lp`` holds line protocol, each rejected line preceded by a comment
(``# <UTC time> <reason>``), so ``grep -v '^#' FILE | curl --data-binary @- …/write`` re-sends them after
fixing the cause. Bounded: the oldest files are deleted beyond ``max_bytes``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.deadletter")


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
        log.warning("influx.dead_letter", file=str(path), reason=reason_one_line[:300])
        self._trim()

    def _trim(self) -> None:
        files = sorted(self.directory.glob("*.lp"))
        total = sum(f.stat().st_size for f in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
