"""Reading what a child process prints to a pseudo-terminal (os.openpty), with a ceiling."""

from __future__ import annotations

import os
import select
import time


def read_until(fd: int, needle: str, seen: list[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = "".join(seen)
        if needle in text:
            return text
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            seen.append(chunk.decode(errors="replace"))
    raise AssertionError(f"{needle!r} not printed within {timeout_s}s; output so far:\n{''.join(seen)[-3000:]}")
