"""Home Assistant's "a string with a number inside" rule, in linear time. Pure code.

HA's InfluxDB integration (``homeassistant/components/influxdb/const.py``) tests attribute strings with
``RE_DIGIT_TAIL = ^[^\\.]*\\d+\\.?\\d+[^\\.]*$`` and, on a match, stores ``float(RE_DECIMAL.sub("", s))`` too.
That pattern backtracks catastrophically (cubic in the length of a digit run followed by dots), and HA
sends the same strings again in every snapshot. What it matches, written out:

* no ``.`` in the string: it matches when two decimal digits stand next to each other somewhere;
* exactly one ``.``: it matches when a decimal digit stands right before and right after that dot;
* two or more dots: never (``[^.]`` parts cannot hold a dot and ``\\.?`` takes at most one).

``has_digit_tail`` decides exactly that with ``str.find`` and one non-backtracking search, so its cost is
linear in the length; tests check it against HA's own pattern on generated short strings.
"""

from __future__ import annotations

import re

_TWO_DIGITS = re.compile(r"\d\d")  # linear: a fixed-width pattern, no nested repetition
_DIGIT = re.compile(r"\d")
_NOT_DECIMAL = re.compile(r"[^\d.]+")  # HA's RE_DECIMAL: linear (one class, one repetition)


def has_digit_tail(text: str) -> bool:
    """``RE_DIGIT_TAIL.match(text) is not None``, without the backtracking."""
    dot = text.find(".")
    if dot < 0:
        return _TWO_DIGITS.search(text) is not None
    if text.find(".", dot + 1) >= 0:
        return False
    return (
        0 < dot < len(text) - 1
        and _DIGIT.match(text, dot - 1) is not None
        and _DIGIT.match(text, dot + 1) is not None
    )


def digit_tail_number(text: str) -> float | None:
    """The float HA derives from a string that passes the rule (digits and dots kept), else None."""
    if not has_digit_tail(text):
        return None
    try:
        return float(_NOT_DECIMAL.sub("", text))
    except (ValueError, OverflowError):
        return None


def to_float(value: object) -> float | None:
    """float(value) as Python does it (HA relies on that), None when it fails."""
    try:
        return float(value)  # type: ignore[arg-type]  # anything float() takes; the rest is None
    except (ValueError, TypeError, OverflowError):
        return None
