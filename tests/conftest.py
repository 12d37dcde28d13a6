"""Shared fixtures. Real parts: influxd on a free loopback port, SQLite files in tmp dirs."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.influxd import InfluxServer
from tests.support.real_ha import RealHomeAssistant, ensure_ha_venv

_db_counter = itertools.count(1)


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
