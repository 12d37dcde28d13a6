"""Configuration loading as properties: for any mix of sources, the documented precedence decides each
setting (arguments > HOMEIQ_* environment > credential files > TOML file > default), and a bad value in any
source is one ConfigError naming the setting.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import CREDENTIAL_FILES, load_settings
from homeiq_daemon.errors import ConfigError
from tests.support.hypo import examples

SOURCES = ("toml", "credentials", "env", "init")  # lowest precedence first

# (section, key): a strategy of valid values, their TOML text, and whether a credential file may carry it.
SETTINGS: dict[tuple[str, str], tuple[st.SearchStrategy[Any], bool]] = {
    ("influxdb", "database"): (st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True), False),
    ("batch", "size"): (st.integers(1, 50_000), False),
    ("batch", "flush_interval_s"): (st.sampled_from([0.5, 1.0, 2.5, 30.0]), False),
    ("influxdb", "token"): (st.from_regex(r"[A-Za-z0-9]{8,20}", fullmatch=True), True),
    ("influxdb", "password"): (st.from_regex(r"[A-Za-z0-9]{8,20}", fullmatch=True), True),
}
CREDENTIAL_NAME = {tuple(dotted.split(".")): name for name, dotted in CREDENTIAL_FILES.items()}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("HOMEIQ_") or key in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
            del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def toml_value(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def load(placed: dict[str, dict[tuple[str, str], Any]], directory: Path) -> Any:
    """Write each source as the daemon reads it and load the settings."""
    sections: dict[str, list[str]] = {}
    for (section, key), value in placed["toml"].items():
        sections.setdefault(section, []).append(f"{key} = {toml_value(value)}")
    config = directory / "homeiq.toml"
    config.write_text("".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items()))
    credentials = directory / "credentials"
    credentials.mkdir()
    for setting, value in placed["credentials"].items():
        (credentials / CREDENTIAL_NAME[setting]).write_text(f"{value}\n")
    env = {f"HOMEIQ_{section.upper()}__{key.upper()}": str(value)
           for (section, key), value in placed["env"].items()}
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    init: dict[str, dict[str, Any]] = {}
    for (section, key), value in placed["init"].items():
        init.setdefault(section, {})[key] = value
    with environment(env):
        return load_settings(config, state_dir=directory / "state", **init)


@st.composite
def placements(draw: st.DrawFn) -> dict[str, dict[tuple[str, str], Any]]:
    placed: dict[str, dict[tuple[str, str], Any]] = {source: {} for source in SOURCES}
    for setting, (values, credential) in SETTINGS.items():
        allowed = [s for s in SOURCES if credential or s != "credentials"]
        for source in draw(st.lists(st.sampled_from(allowed), unique=True, max_size=len(allowed))):
            placed[source][setting] = draw(values)
    return placed


def effective(loaded: Any, setting: tuple[str, str]) -> Any:
    value = getattr(getattr(loaded, setting[0]), setting[1])
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@given(placements())
@settings(max_examples=examples(60), deadline=None)
def test_the_highest_source_that_sets_a_value_wins(placed: dict[str, dict[tuple[str, str], Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(placed, Path(tmp))
    defaults = load_settings(None)
    for setting in SETTINGS:
        winner = next((placed[s][setting] for s in reversed(SOURCES) if setting in placed[s]), None)
        expected = effective(defaults, setting) if winner is None else winner
        assert effective(loaded, setting) == expected, (setting, placed)


BAD_VALUES: dict[tuple[str, str], list[Any]] = {
    ("batch", "size"): [0, -5, "many"],
    ("batch", "flush_interval_s"): [-1.0, "soon"],
    ("influxdb", "url"): ["ftp://x", "influx.local:8086"],
}


@given(st.sampled_from(sorted(BAD_VALUES)), st.data(), st.sampled_from(["toml", "env", "init"]))
@settings(max_examples=examples(40), deadline=None)
def test_a_bad_value_in_any_source_is_one_error_naming_the_setting(
    setting: tuple[str, str], data: st.DataObject, source: str
) -> None:
    bad = data.draw(st.sampled_from(BAD_VALUES[setting]))
    placed: dict[str, dict[tuple[str, str], Any]] = {s: {} for s in SOURCES}
    placed[source][setting] = bad
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ConfigError) as caught:
        load(placed, Path(tmp))
    message = str(caught.value)
    assert message.startswith(f"{setting[0]}.{setting[1]}"), message
    assert "\n" not in message


def test_a_lower_source_cannot_hide_a_bad_higher_one(tmp_path: Path) -> None:
    placed: dict[str, dict[tuple[str, str], Any]] = {s: {} for s in SOURCES}
    placed["toml"][("batch", "size")] = 10
    placed["env"][("batch", "size")] = 0
    with pytest.raises(ConfigError, match=r"^batch\.size"):
        load(placed, tmp_path)
