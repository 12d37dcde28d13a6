"""The write contract the daemon relies on, run against the real influxd 1.6 and the InfluxDB 2.x fake alike.

What is stored is read back the way each server shows it (``SELECT *`` from influxd, the fake's points) and
compared with the body as the tests' own line-protocol parser reads it; the daemon's writer must get every
good point in and only the bad ones dead-lettered, whatever status the server uses for them (1.x: 400 with a
partial write for a bad line or a field type conflict; 2.x: 400 rejecting the whole batch for a bad line, 422
for a conflict). The fake's own status codes and error bodies are checked against InfluxDB 2.x's at the end.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from homeiq_daemon.config import InfluxDBSettings
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
from homeiq_daemon.sinks.influx.writer import InfluxWriter
from tests.support import oracle
from tests.support.fake_influx2 import FakeInflux2
from tests.support.influxd import InfluxServer
from tests.support.lineproto import parse_body

pytestmark = pytest.mark.influxd


@dataclass
class Target:
    name: str
    settings: InfluxDBSettings
    stored: Callable[[], oracle.Points]
    preload: Callable[[bytes], None]


@pytest.fixture(params=["influxd-1.6", "fake-2.x"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "influxd-1.6":
        server = InfluxServer(tmp_path / "influxd", max_body_size=4096)
        server.start()
        try:
            server.create_database("db")
            yield Target(request.param, InfluxDBSettings(url=server.url, database="db", gzip=False),
                         lambda: oracle.stored(server, "db"), lambda body: _expect_written(server.write(body, "db")))
        finally:
            server.stop()
        return
    fake = FakeInflux2(max_body_bytes=4096)
    await fake.start()
    try:
        settings = InfluxDBSettings(url=fake.url, api_version=2, org=fake.org, bucket=fake.bucket, token=fake.token)

        def preload(body: bytes) -> None:
            for point in parse_body(body.decode()):
                fake.points[(point.measurement, tuple(sorted(point.tags.items())), point.time_ns)] = point.fields
                fake.field_types.update({(point.measurement, k): type(v).__name__.replace("str", "string")
                                         for k, v in point.fields.items()})

        yield Target(request.param, settings, lambda: {k: _floats(v) for k, v in fake.points.items()}, preload)
    finally:
        await fake.stop()


def _expect_written(result: tuple[int, str]) -> None:
    assert result[0] == 204, result


def _floats(fields: dict[str, object]) -> dict[str, object]:
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in fields.items()}


def as_stored(body: str) -> oracle.Points:
    """What a server must hold after ``body``: each point as the tests' parser reads it."""
    out: oracle.Points = {}
    for point in parse_body(body):
        key = (point.measurement, tuple(sorted(point.tags.items())), point.time_ns or 0)
        out.setdefault(key, {}).update(_floats(dict(point.fields)))
    return out


async def write(target: Target, tmp_path: Path, body: str, points: int) -> tuple[int, int, DeadLetters, Stats]:
    stats = Stats()
    dead = DeadLetters(tmp_path / "deadletter")
    writer = InfluxWriter(target.settings, dead, stats)
    await writer.start()
    try:
        result = await writer.write(body.encode(), points)
    finally:
        await writer.close()
    return result.written, result.rejected, dead, stats


# Escapes of every kind the encoder produces, unicode, and the field types the daemon writes.
VARIED = "\n".join([
    r'°C,domain=sensor,entity_id=living\ room value=21.5,friendly_name_str="Living \"Room\"" 1000',
    r'my\,measure,domain=sensor,entity_id=a\=b value=-0.25,path_str="C:\\temp" 2000',
    r'kWh,domain=sensor,entity_id=energy value=1e+21,state="on",ok=true 3000',
    r'media_player.tv,domain=media_player,entity_id=tv state="Épisode 4 — part 2",volume_level=0.35 4000',
])


async def test_varied_points_are_stored_as_written(target: Target, tmp_path: Path) -> None:
    written, rejected, dead, _ = await write(target, tmp_path, VARIED + "\n", 4)
    assert (written, rejected, dead.count) == (4, 0, 0)
    assert target.stored() == as_stored(VARIED)


async def test_a_field_type_conflict_rejects_only_that_point(target: Target, tmp_path: Path) -> None:
    target.preload(b"m,entity_id=first value=1.0 1\n")
    good = [f"m,entity_id=e{i} value={i}.5 {10 + i}" for i in range(30)]
    bad = 'm,entity_id=bad value="text" 99'
    body = "\n".join([*good[:11], bad, *good[11:]]) + "\n"
    written, rejected, dead, stats = await write(target, tmp_path, body, 31)
    assert (written, rejected, dead.count) == (30, 1, 1)
    assert bad in next((tmp_path / "deadletter").glob("*.lp")).read_text()
    assert stats.points_dropped["rejected"] == 1
    assert target.stored() == as_stored("m,entity_id=first value=1.0 1\n" + "\n".join(good))


async def test_an_unparsable_line_is_dead_lettered_and_the_rest_written(target: Target, tmp_path: Path) -> None:
    good = [f"m,entity_id=e{i} value={i}.0 {100 + i}" for i in range(20)]
    bad = "m,entity_id=broken value= 150"
    body = "\n".join([*good[:5], bad, *good[5:]]) + "\n"
    written, rejected, dead, _ = await write(target, tmp_path, body, 21)
    assert (written, rejected, dead.count) == (20, 1, 1)
    assert target.stored() == as_stored("\n".join(good))


async def test_a_body_over_the_servers_limit_is_split_and_fully_written(target: Target, tmp_path: Path) -> None:
    lines = [f"m,entity_id=e{i} value={i}.0 {1000 + i}" for i in range(400)]  # ~12 KB, the limit is 4 KiB
    written, rejected, dead, stats = await write(target, tmp_path, "\n".join(lines) + "\n", 400)
    assert (written, rejected, dead.count) == (400, 0, 0)
    assert stats.sink_errors["413"] >= 1
    assert target.stored() == as_stored("\n".join(lines))


# --- the 2.x fake's answers, as InfluxDB 2.x gives them ----------------------------------------------------


@pytest.fixture
async def fake2() -> AsyncIterator[FakeInflux2]:
    fake = FakeInflux2(max_body_bytes=1024)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def post(fake: FakeInflux2, body: bytes, *, token: str | None = None, bucket: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, str]]:
    query = {"org": fake.org, "bucket": bucket or fake.bucket, "precision": "ns"}
    sent = {"Authorization": f"Token {token or fake.token}", **(headers or {})}
    async with aiohttp.ClientSession() as session, session.post(
        f"{fake.url}/api/v2/write", params=query, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=30)
    ) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else {}), dict(resp.headers)


async def test_fake_2x_status_codes_and_error_bodies(fake2: FakeInflux2) -> None:
    assert (await post(fake2, b"m value=1.0 1\n"))[0] == 204

    status, body, headers = await post(fake2, b"m value=2.0 2\nm value= 3\n")
    assert status == 400
    assert body["code"] == "invalid"
    assert body["message"].startswith("unable to parse 'm value= 3': ")
    assert headers["X-Platform-Error-Code"] == "invalid"
    assert ("m", (), 2) not in fake2.points, "a 400 rejects the whole batch"

    status, body, _ = await post(fake2, b'm value="s" 4\nm value=5.0 5\n')
    assert status == 422
    assert body["code"] == "unprocessable entity"
    assert body["message"].startswith("failure writing points to database: partial write: field type conflict")
    assert body["message"].endswith("dropped=1")
    assert ("m", (), 5) in fake2.points
    assert ("m", (), 4) not in fake2.points

    assert (await post(fake2, b"m value=1.0 1\n", token="wrong"))[1] == {"code": "unauthorized",
                                                                         "message": "unauthorized access"}
    assert (await post(fake2, b"m value=1.0 1\n", bucket="nope"))[:2] == (
        404, {"code": "not found", "message": 'bucket "nope" not found'})
    big = b"".join(b"m value=%d.0 %d\n" % (i, i) for i in range(200))
    assert (await post(fake2, gzip.compress(big), headers={"Content-Encoding": "gzip"}))[:2] == (
        413, {"code": "request too large", "message": "unable to read data: points batch is too large"})
    assert (await post(fake2, b""))[:2] == (400, {"code": "invalid", "message": "writing requires points"})

    fake2.fail_next = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "3"})]
    status, body, headers = await post(fake2, b"m value=1.0 1\n")
    assert (status, body["code"], headers["Retry-After"]) == (429, "too many requests", "7")
    status, body, headers = await post(fake2, b"m value=1.0 1\n")
    assert (status, body["code"], headers["Retry-After"]) == (503, "unavailable", "3")
