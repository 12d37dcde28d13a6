"""Backoff delays shared by every reconnect/retry loop (tenacity's exponential backoff with jitter)."""

from __future__ import annotations

import inspect
from typing import cast

from tenacity import RetryCallState, wait_exponential_jitter


class _Attempt:
    __slots__ = ("attempt_number",)

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


# tenacity 9.2 renamed ``initial`` to ``multiplier``; accept both so older installs keep working.
_FIRST = "multiplier" if "multiplier" in inspect.signature(wait_exponential_jitter).parameters else "initial"


def backoff_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay before retry number ``attempt`` (1-based): initial * 2^(attempt-1) plus jitter, capped."""
    strategy = wait_exponential_jitter(**{_FIRST: initial_s}, max=max_s, jitter=initial_s)
    return float(strategy(cast(RetryCallState, _Attempt(max(1, attempt)))))
