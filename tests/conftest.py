"""Shared fixtures. Real parts: influxd on a free loopback port, SQLite files in tmp dirs."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.support.influxd import InfluxServer
from tests.support.logsetup import use_test_logging
from tests.support.real_ha import RealHomeAssistant, ensure_ha_venv

_db_counter = itertools.count(1)
use_test_logging()

# --- hypothesis profiles ----------------------------------------------------------------------------------
# ci: the same examples on every run (derandomize), no example database to make a clean clone differ from a
# used one, the blob to reproduce a failure printed, and no default deadline: a loaded 2-core machine makes
# any fast path look slow. A test whose slow path is the bug (catastrophic regex backtracking) sets its own
# generous deadline. Examples a run ever found are committed as @example next to their test.
# dev: a longer randomised run with the example database on (``HYPOTHESIS_PROFILE=dev scripts/test``);
# tests that size their runs with tests.support.hypo.examples() get ten times as many examples.
settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=1000, print_blob=True, deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)


def _profile_line() -> str:
    return f"hypothesis profile {HYPOTHESIS_PROFILE!r}: {settings.default.show_changed()}"


def pytest_report_header() -> str:
    return _profile_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The header is hidden by -q (scripts/test): say which profile ran at the end as well.
    terminalreporter.write_line(_profile_line())


@pytest.fixture(autouse=True)
def _plain_logging_after_each_test() -> Iterator[None]:
    # A test that configures the daemon's logging (cli.main, configure_logging onto a StringIO) must not leave
    # later tests logging into its stream, which pytest may have closed.
    yield
    use_test_logging()


# --- influxd ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def influxd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One influxd for the session (tests take their own database). Fault tests use ``influxd_private``."""
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_db(influxd_server: InfluxServer) -> str:
    """A fresh, empty database name on the shared influxd."""
    name = f"t{next(_db_counter)}"
    influxd_server.create_database(name)
    return name


@pytest.fixture
def influxd_private(tmp_path: Path) -> Iterator[InfluxServer]:
    """An influxd of this test's own, for killing, pausing and restarting."""
    server = InfluxServer(tmp_path / "influxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- real Home Assistant (tests/support/real_ha.py) ----------------------------------------------------------


@pytest.fixture(scope="session")
def ha_venv() -> Path:
    """HA's own venv, built by scripts/ensure-ha.sh when missing (a fresh CI machine builds it once).

    Skipped only when asked to with HOMEIQ_SKIP_HA=1; a failed build is an error, never a silent skip.
    """
    if os.environ.get("HOMEIQ_SKIP_HA") == "1":
        pytest.skip("HOMEIQ_SKIP_HA=1: tests against the real Home Assistant were skipped on request")
    return ensure_ha_venv()


@pytest.fixture(scope="session")
def real_ha(ha_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHomeAssistant]:
    """One real Home Assistant for the session (owner user and long-lived token ready). Tests that need to
    restart or break HA use ``real_ha_private``. Mark tests using it with ``@pytest.mark.ha``."""
    ha = RealHomeAssistant(tmp_path_factory.mktemp("ha"), ha_venv)
    ha.start()
    try:
        yield ha
    finally:
        ha.stop()


@pytest.fixture
def real_ha_private(ha_venv: Path, tmp_path: Path) -> Iterator[RealHomeAssistant]:
    """A real Home Assistant of this test's own, for restarting and stopping."""
    ha = RealHomeAssistant(tmp_path / "ha", ha_venv)
    ha.start()
    try:
        yield ha
    finally:
        ha.stop()
