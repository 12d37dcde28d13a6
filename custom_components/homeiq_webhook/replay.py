"""Replay protection for the homeiq_webhook integration, sans-IO and self-contained (it runs inside Home
Assistant and imports nothing of the daemon or of HA).

A delivery is refused by ``verify`` once its timestamp is outside the tolerance window, so an id only has to
be remembered until ``timestamp + tolerance``: then a replay of it fails on the timestamp instead. Memory
is bounded by time, not by a count an attacker could flush: only verified deliveries (made with our secret)
are remembered, and each one for at most the window. ``MAX_REMEMBERED`` is a safety cap; when it is reached
within one window, new deliveries are refused (503, the sender retries later) rather than an id forgotten.
The state is plain data (``dump``/``load``) so the integration can keep it in HA's storage across restarts.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

MAX_REMEMBERED = 100_000


class WindowFull(Exception):
    """More verified deliveries within one tolerance window than ``MAX_REMEMBERED``."""


class SeenDeliveries:
    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self._expiry: dict[str, float] = {}  # delivery id -> when a replay of it fails on its timestamp anyway
        self._heap: list[tuple[float, str]] = []
        self._max = max_remembered

    def __len__(self) -> int:
        return len(self._expiry)

    def prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expiry, msg_id = heapq.heappop(self._heap)
            if self._expiry.get(msg_id) == expiry:
                del self._expiry[msg_id]

    def first_time(self, msg_id: str, timestamp: float, tolerance_s: float, now: float) -> bool:
        """True (and remembered) for an id not seen within its window; False for a repeat. Raises WindowFull
        when it cannot be remembered."""
        self.prune(now)
        expiry = timestamp + tolerance_s + 1.0  # one second of slack for the sender's rounding
        if msg_id in self._expiry:
            if expiry > self._expiry[msg_id]:  # a retry re-signed later: keep it until its own window ends
                self._remember(msg_id, expiry)
            return False
        if len(self._expiry) >= self._max:
            raise WindowFull(f"{self._max} deliveries within one tolerance window")
        self._remember(msg_id, expiry)
        return True

    def _remember(self, msg_id: str, expiry: float) -> None:
        self._expiry[msg_id] = expiry
        heapq.heappush(self._heap, (expiry, msg_id))

    def dump(self) -> list[list[object]]:
        return [[msg_id, expiry] for msg_id, expiry in self._expiry.items()]

    def load(self, items: Iterable[object], now: float) -> None:
        """Entries from ``dump``; anything malformed or expired is skipped."""
        for item in items:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                continue
            msg_id, expiry = item
            usable = isinstance(msg_id, str) and isinstance(expiry, int | float) and expiry >= now
            if usable and len(self._expiry) < self._max:
                self._remember(str(msg_id), float(expiry))
