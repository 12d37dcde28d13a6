"""Giving freed heap back to the system after the big, one-off allocations of a (re)connect.

A connect decodes the whole state snapshot and the three registries (tens of MB for a 5,000-entity home) and
drops them again a moment later. glibc keeps such freed memory mapped (its mmap threshold grows after the
first large free, so later large blocks come from the heap and stay), so RSS would stay at the connect's
peak for good: 12 MB more than needed with 5,000 entities, measured here. ``malloc_trim(0)`` hands free
heap pages back; it costs a few milliseconds, once per connection. A no-op where there is no glibc.
"""

from __future__ import annotations

import gc
from typing import Any

_libc: Any = None
_unavailable = False


def release_free_memory() -> bool:
    """Collect garbage and give free heap pages back to the OS; False when the C library cannot."""
    global _libc, _unavailable  # noqa: PLW0603 - a process-wide handle, loaded once
    gc.collect()
    if _unavailable:
        return False
    if _libc is None:
        try:
            import ctypes  # noqa: PLC0415 - only where it is used

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim  # noqa: B018 - raises AttributeError without glibc
        except (OSError, AttributeError):
            _unavailable = True
            return False
    _libc.malloc_trim(0)
    return True
