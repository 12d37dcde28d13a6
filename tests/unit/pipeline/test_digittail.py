"""The linear digit-tail rule decides exactly what Home Assistant's backtracking pattern decides."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.pipeline.digittail import digit_tail_number, has_digit_tail

# homeassistant/components/influxdb/const.py (2024.3.3): RE_DIGIT_TAIL and RE_DECIMAL, verbatim. The
# integration test test_mapping_vs_home_assistant.py checks these against the installed HA package.
HA_RE_DIGIT_TAIL = re.compile(r"^[^\.]*\d+\.?\d+[^\.]*$")
HA_RE_DECIMAL = re.compile(r"[^\d.]+")

# Short strings over the characters the pattern cares about (ASCII and non-ASCII decimal digits, dots,
# newlines, which ``$`` treats specially) plus anything else.
interesting = st.text(alphabet=st.sampled_from("0123456789..a \n\u0663\u00b2x-e"), max_size=12)
anything = st.text(max_size=12)


def ha_number(text: str) -> float | None:
    if not HA_RE_DIGIT_TAIL.match(text):
        return None
    try:
        return float(HA_RE_DECIMAL.sub("", text))
    except ValueError:
        return None


@given(text=st.one_of(interesting, anything))
@settings(max_examples=800)
def test_same_decision_as_home_assistants_pattern(text: str) -> None:
    assert has_digit_tail(text) == (HA_RE_DIGIT_TAIL.match(text) is not None)
    assert digit_tail_number(text) == ha_number(text)


def test_known_cases() -> None:
    assert digit_tail_number("12.5 W") == 12.5
    assert digit_tail_number("v1.2.3") is None  # two dots
    assert digit_tail_number("a1b2") is None  # no two digits side by side
    assert digit_tail_number("a12b") == 12.0
    assert digit_tail_number("1.x") is None  # no digit after the dot
    assert digit_tail_number("\u0663\u0664") == 34.0  # Arabic-Indic digits are \d too, and float() reads them


def test_pathological_input_is_decided_without_backtracking() -> None:
    """The input that took seconds with the pattern (cubic growth) is one find() and one search here; its
    speed is measured in bench/regex.py, the decision is checked here."""
    for n in (200, 400, 1000, 100_000):
        assert has_digit_tail("1" * n + ".x.") is False
        assert has_digit_tail("1" * n + ".x") is False  # one dot, no digit after it
        assert has_digit_tail("1" * n) is True
