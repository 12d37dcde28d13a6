"""Sizing hypothesis runs per profile (see the profiles in tests/conftest.py)."""

from __future__ import annotations

import os

# The dev profile runs ten times the examples of ci; ci's counts are what the suite's time budget allows.
_SCALE = {"ci": 1, "dev": 10}


def examples(count: int) -> int:
    """``max_examples`` for a test that runs ``count`` examples in CI."""
    return count * _SCALE.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 1)
