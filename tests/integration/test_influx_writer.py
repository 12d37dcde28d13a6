"""The InfluxDB writer: real influxd 1.x, and the 2.x write contract; poison isolation, retries, auth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.config import InfluxDBSettings
from homeiq_daemon.errors import HistoryUnavailable, SinkAuthError, TransientSinkError
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
from homeiq_daemon.sinks.influx.query import InfluxHistory
from homeiq_daemon.sinks.influx.writer import InfluxWriter
from tests.support.fake_influx2 import FakeInflux2
from tests.support.influxd import InfluxServer, free_port


@pytest.fixture
async def influx2() -> AsyncIterator[FakeInflux2]:
    fake = FakeInflux2()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def _writer(settings: InfluxDBSettings, tmp_path: Path) -> tuple[InfluxWriter, Stats, DeadLetters]:
    stats = Stats()
    dead = DeadLetters(tmp_path / "deadletter")
    writer = InfluxWriter(settings, dead, stats)
    await writer.start()
    return writer, stats, dead


async def test_v1_writes_and_creates_the_database(influxd_server: InfluxServer, tmp_path: Path) -> None:
    db = f"created_{time.monotonic_ns()}"
    writer, _, _ = await _writer(InfluxDBSettings(url=influxd_server.url, database=db), tmp_path)
    try:
        result = await writer.write(b"m,entity_id=a value=1.5 1000\nm,entity_id=b value=2.5 2000\n", 2)
    finally:
        await writer.close()
    assert (result.written, result.rejected) == (2, 0)
    rows = influxd_server.rows("SELECT * FROM m GROUP BY *", db)
    assert sorted((r["entity_id"], r["value"]) for r in rows) == [("a", 1.5), ("b", 2.5)]


async def _write_line(settings: InfluxDBSettings, tmp_path: Path, line: bytes) -> tuple[int, int]:
    writer, _, _ = await _writer(settings, tmp_path)
    try:
        await writer.ensure_database()
        result = await writer.write(line, 1)
    finally:
        await writer.close()
    return result.written, result.rejected


async def _points(settings: InfluxDBSettings, entity_id: str, end_ns: int) -> list[tuple[int, Any]]:
    reader = InfluxHistory(settings)
    await reader.start()
    try:
        points = await reader.entity_points(entity_id, 0, end_ns, 10)
    finally:
        await reader.close()
    return [(p["time_ns"], p["value"]) for p in points]


async def test_v1_basic_auth_with_a_non_ascii_password_against_influxd(tmp_path: Path) -> None:
    """influxd with auth on: the writer and the history reader log in (UTF-8 credentials, as influxd
    compares them); a wrong password is SinkAuthError for the writer and a clear 401 for the reader."""
    server = InfluxServer(tmp_path / "influxd", auth_enabled=True)
    server.start()
    try:
        password = "pä'ss wörd:✓"
        quoted = password.replace("'", "\\'")  # the first user may be created without logging in
        server.query(f"CREATE USER \"admin\" WITH PASSWORD '{quoted}' WITH ALL PRIVILEGES")
        good = InfluxDBSettings(url=server.url, database="authdb", username="admin", password=password)
        assert await _write_line(good, tmp_path, b"W,domain=sensor,entity_id=power value=1.5 1000\n") == (1, 0)
        assert await _points(good, "sensor.power", 2000) == [(1000, 1.5)]

        wrong = InfluxDBSettings(url=server.url, database="authdb", username="admin", password=password + "x")
        with pytest.raises(SinkAuthError):
            await _write_line(wrong, tmp_path, b"W,domain=sensor,entity_id=power value=2.5 2000\n")
        with pytest.raises(HistoryUnavailable, match="HTTP 401"):
            await _points(wrong, "sensor.power", 3000)
    finally:
        server.stop()


async def test_v1_poison_line_is_isolated_and_dead_lettered(influxd_server: InfluxServer, influx_db: str,
                                                              tmp_path: Path) -> None:
    influxd_server.write(b"m value=1.0 1\n", influx_db)  # "value" is a float field now
    good = [f"m,entity_id=e{i} value={i}.0 {10 + i}" for i in range(40)]
    bad = 'm,entity_id=bad value="text" 99'
    body = ("\n".join([*good[:17], bad, *good[17:]]) + "\n").encode()
    writer, stats, dead = await _writer(InfluxDBSettings(url=influxd_server.url, database=influx_db), tmp_path)
    try:
        result = await writer.write(body, 41)
    finally:
        await writer.close()
    assert (result.written, result.rejected) == (40, 1)
    assert dead.count == 1
    files = list((tmp_path / "deadletter").glob("*.lp"))
    text = files[0].read_text()
    assert bad in text
    assert "field type conflict" in text
    rows = influxd_server.rows("SELECT count(value) FROM m WHERE time >= 10", influx_db)
    assert rows[0]["count"] == 40
    assert stats.points_dropped["rejected"] == 1


async def test_v1_dead_server_is_transient(tmp_path: Path) -> None:
    settings = InfluxDBSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1, write_attempts=2)
    writer, stats, _ = await _writer(settings, tmp_path)
    try:
        with pytest.raises(TransientSinkError):
            await writer.write(b"m value=1.0 1\n", 1)
    finally:
        await writer.close()
    assert sum(stats.sink_errors.values()) == 2


async def test_v2_contract_headers_gzip_and_partial_write(influx2: FakeInflux2, tmp_path: Path) -> None:
    settings = InfluxDBSettings(url=influx2.url, api_version=2, org="home", bucket="ha", token="tok", gzip=True)
    writer, _, dead = await _writer(settings, tmp_path)
    try:
        first = await writer.write(b"m,entity_id=a value=1.0 1\n", 1)
        second = await writer.write(b'm,entity_id=a value="x" 2\nm,entity_id=b value=3.0 3\n', 2)
    finally:
        await writer.close()
    assert (first.written, first.rejected) == (1, 0)
    assert (second.written, second.rejected) == (1, 1)
    assert dead.count == 1
    req = influx2.requests[0]
    assert req["headers"]["Authorization"] == "Token tok"
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert req["query"] == {"org": "home", "bucket": "ha", "precision": "ns"}
    assert (("m", (("entity_id", "b"),), 3)) in influx2.points


async def test_v2_retry_after_is_honoured(influx2: FakeInflux2, tmp_path: Path) -> None:
    influx2.fail_next = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "0"})]
    settings = InfluxDBSettings(url=influx2.url, api_version=2, org="home", bucket="ha", token="tok")
    waits: list[float] = []

    async def record(seconds: float) -> None:  # the writer's wait between attempts, recorded, not slept
        waits.append(seconds)

    stats = Stats()
    writer = InfluxWriter(settings, DeadLetters(tmp_path / "deadletter"), stats, sleep=record)
    await writer.start()
    try:
        result = await writer.write(b"m value=1.0 1\n", 1)
    finally:
        await writer.close()
    assert result.written == 1
    assert waits == [7.0, 0.0]  # exactly what each Retry-After asked for
    assert stats.sink_errors["429"] == 1
    assert stats.sink_errors["503"] == 1


async def test_v2_wrong_token_is_an_auth_error(influx2: FakeInflux2, tmp_path: Path) -> None:
    settings = InfluxDBSettings(url=influx2.url, api_version=2, org="home", bucket="ha", token="nope")
    writer, _, _ = await _writer(settings, tmp_path)
    try:
        with pytest.raises(SinkAuthError):
            await writer.write(b"m value=1.0 1\n", 1)
    finally:
        await writer.close()
    assert len(influx2.requests) == 1  # not retried: the same token will not start working


async def test_v1_body_too_large_is_split_not_dropped(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "small", max_body_size=4096)  # influxd answers 413 above this
    server.start()
    try:
        server.create_database("db")
        lines = [f"m,entity_id=e{i} value={i}.0 {1000 + i}" for i in range(400)]  # ~12 KB
        writer, stats, dead = await _writer(InfluxDBSettings(url=server.url, database="db", gzip=False), tmp_path)
        try:
            result = await writer.write(("\n".join(lines) + "\n").encode(), len(lines))
        finally:
            await writer.close()
        assert stats.sink_errors["413"] >= 1
        assert (result.written, result.rejected) == (400, 0)
        assert dead.count == 0
        assert server.rows("SELECT count(value) FROM m", "db")[0]["count"] == 400
    finally:
        server.stop()
