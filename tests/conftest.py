"""Shared fixtures. Real parts: influxd on a free loopback port, SQLite files in tmp dirs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.influxd import InfluxServer

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
