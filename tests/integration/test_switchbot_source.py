"""The SwitchBot source in the running daemon, against a loopback fake of the Cloud API that checks every
request's signature with the switchbot-api package: polling, the metadata store and /api/v1, the embedded
history and a real influxd, retries, the daily budget, quota and credential halts, and webhook pushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.sources.switchbot import persistence as switchbot_persistence
from homeiq_daemon.sources.switchbot.api import seconds_to_next_day, utc_day
from homeiq_daemon.sources.switchbot.source import KEY_BUDGET, SwitchBotSource
from tests.support.daemon import daemon_settings, eventually_async, running_app, wait_for
from tests.support.fake_switchbot import README_PUSHES, FakeSwitchBotCloud
from tests.support.influxd import InfluxServer

PATH_SECRET = "0123456789abcdef0123456789abcdef"
METER = "switchbot.living_room_meter_temperature"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeSwitchBotCloud]:
    fake = FakeSwitchBotCloud()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def settings_for(tmp_path: Path, fake: FakeSwitchBotCloud, **switchbot: Any) -> Settings:
    section = {
        "token": fake.token,
        "secret": fake.secret,
        "base_url": fake.base_url,
        "daily_budget": 1_000_000,  # a test-sized day: four devices polled every ~0.35 s
        "reserved_requests": 0,
        "min_poll_interval_s": 0.3,
        "timeout_s": 2.0,
        "attempts": 3,
        "retry_max_s": 0.05,
        "webhook_path_secret": PATH_SECRET,
        **switchbot,
    }
    return daemon_settings(
        tmp_path,
        switchbot=section,
        http={"enabled": True, "port": 0},
        metadata={"state_flush_interval_s": 0.2},
    )


def source_of(app: App) -> SwitchBotSource:
    assert app.switchbot is not None
    return app.switchbot


def tracked(app: App, entity_id: str) -> str | None:
    assert app.pipeline is not None
    state = app.pipeline.states.get(entity_id)
    return state.state if state is not None else None


async def http(app: App, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    server = app.server
    assert server is not None
    async with aiohttp.ClientSession() as session, session.request(
        method, f"http://127.0.0.1:{server.port}{path}", data=body
    ) as response:
        raw = await response.read()
        return response.status, (orjson.loads(raw) if raw[:1] in (b"{", b"[") else raw)


async def history_points(app: App, entity_id: str) -> list[Any]:
    assert app.history is not None
    return await app.history.query(entity_id, 0, time.time_ns() + 10**12)


def push(mac: str, sample_ms: int, **context: Any) -> bytes:
    """A Meter's push as the API README's "Receive events from webhook" section shows it (its sample, with
    this test's MAC, time and readings)."""
    return orjson.dumps({"eventType": "changeReport", "eventVersion": "1",
                         "context": {**README_PUSHES["WoMeter"]["context"], "deviceMac": mac,
                                     "timeOfSample": sample_ms, **context}})  # fmt: skip


def answered(cloud: FakeSwitchBotCloud, source: Any) -> bool:
    """Every request the fake received has been answered and counted by the source: none is in flight."""
    return sum(source.metrics.requests.values()) >= len(cloud.requests)


# --- polling ------------------------------------------------------------------------------------------------------


async def test_meters_plugs_and_hub_reach_the_pipeline_store_and_api(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        await wait_for(lambda: tracked(app, "switchbot.coffee_machine_power") == "45.7")
        await wait_for(lambda: tracked(app, "switchbot.hub_2_office_light_level") == "12")
        assert tracked(app, "switchbot.balcony_temperature") == "-3.5"
        assert tracked(app, "switchbot.coffee_machine_current") == "377.0"
        state = app.pipeline.states.get(METER) if app.pipeline else None
        assert state is not None
        assert state.attributes["unit_of_measurement"] == "°C"

        async def devices() -> list[dict[str, Any]]:
            status, page = await http(app, "GET", "/api/v1/devices")
            assert status == 200
            return [d for d in page["items"] if d["source"] == "switchbot"]

        listed = await devices()
        assert {d["device_id"] for d in listed} == {"switchbot:C271111EC0AB", "switchbot:D1A2B3C4D5E6",
                                                    "switchbot:6055F92FCFD2", "switchbot:FA7310762361",
                                                    "switchbot:E2F6032048AB"}  # fmt: skip
        meter = next(d for d in listed if d["device_id"] == "switchbot:C271111EC0AB")
        assert meter["name"] == "Living Room Meter"
        assert meter["manufacturer"] == "SwitchBot"
        assert meter["model"] == "Meter"
        assert meter["via_device_id"] == "switchbot:FA7310762361"

        async def meter_entities() -> list[str]:
            status, page = await http(app, "GET", "/api/v1/entities?device=switchbot:C271111EC0AB")
            assert status == 200
            return sorted(e["entity_id"] for e in page["items"] if e["state"] is not None)

        expected = ["switchbot.living_room_meter_battery", "switchbot.living_room_meter_humidity", METER]

        async def listed_as_expected() -> bool:
            return await meter_entities() == expected

        await eventually_async(listed_as_expected, f"the meter's entities {expected}")
        status, entity = await http(app, "GET", f"/api/v1/entities/{METER}")
        assert status == 200
        assert entity["source"] == "switchbot"
        assert entity["state"] == "26.1"
        assert entity["unit_of_measurement"] == "°C"

        status, metrics = await http(app, "GET", "/metrics")
        assert status == 200
        text = metrics.decode()
        assert "homeiq_switchbot_api_requests_today " in text
        assert 'homeiq_switchbot_api_requests_total{outcome="ok"}' in text
        assert "homeiq_switchbot_devices_polled 4.0" in text
    assert cloud.requests, "no request reached the fake"
    assert cloud.bad_signatures == []
    assert cloud.count("/v1.1/devices/E2F6032048AB/status") == 0  # a Hub Mini has nothing to read
    assert not any("02-202008110034-13" in r.path for r in cloud.requests)  # nor an infrared remote


async def test_unchanged_readings_write_one_point_and_changes_write_more(
    tmp_path: Path, cloud: FakeSwitchBotCloud
) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        polls = cloud.count("/v1.1/devices/C271111EC0AB/status")
        await wait_for(lambda: cloud.count("/v1.1/devices/C271111EC0AB/status") >= polls + 3)
        cloud.statuses["C271111EC0AB"]["temperature"] = 26.4
        await wait_for(lambda: tracked(app, METER) == "26.4")
        await wait_for(lambda: cloud.count("/v1.1/devices/C271111EC0AB/status") >= polls + 6)
        assert app.pipeline is not None
        app.pipeline.flush()
        points = await wait_for_points(app, METER, 2)
        assert [p.value for p in points] == [26.1, 26.4]
        assert len(await history_points(app, "switchbot.living_room_meter_humidity")) == 1


async def wait_for_points(app: App, entity_id: str, count: int) -> list[Any]:
    async def enough() -> list[Any] | None:
        points = await history_points(app, entity_id)
        return points if len(points) >= count else None

    result: list[Any] = await eventually_async(enough, f"{count} points of {entity_id}")
    return result


async def test_meter_lands_in_a_real_influxd(
    tmp_path: Path, cloud: FakeSwitchBotCloud, influxd_server: InfluxServer, influx_db: str
) -> None:
    settings = settings_for(tmp_path, cloud)
    settings = settings.model_copy(update={"influxdb": settings.influxdb.model_copy(
        update={"url": influxd_server.url, "database": influx_db})})  # fmt: skip
    async with running_app(settings) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        assert app.pipeline is not None
        app.pipeline.flush()

        def rows() -> list[dict[str, Any]]:
            return influxd_server.rows('SELECT * FROM "°C" WHERE entity_id = \'living_room_meter_temperature\'',
                                       influx_db)  # fmt: skip

        found = await wait_for_async(rows)
    assert found[0]["value"] == 26.1
    assert found[0]["domain"] == "switchbot"
    assert found[0]["friendly_name_str"] == "Living Room Meter Temperature"


async def wait_for_async(fetch: Any) -> Any:
    async def in_thread() -> Any:
        return await asyncio.to_thread(fetch)

    return await eventually_async(in_thread, "rows in InfluxDB")


# --- retries, budget ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("faults", [[500, 502], ["timeout"]], ids=["5xx", "timeout"])
async def test_transient_failures_are_retried_and_every_attempt_counts(
    tmp_path: Path, cloud: FakeSwitchBotCloud, faults: list[int | str]
) -> None:
    cloud.fail_next = list(faults)
    cloud.hang_s = 3.0
    async with running_app(settings_for(tmp_path, cloud, timeout_s=0.3)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        source = source_of(app)
        assert cloud.count("/v1.1/devices") >= len(faults) + 1
        assert source.metrics.requests["transient"] == len(faults)
        assert source.metrics.budget.used == len(cloud.requests)
    assert cloud.bad_signatures == []


async def test_the_day_count_survives_a_restart(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    settings = settings_for(tmp_path, cloud)
    async with running_app(settings) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        first_run = source_of(app).metrics.budget.used
    assert first_run >= 2
    async with running_app(settings) as (app, _):
        await wait_for(lambda: source_of(app).metrics.budget.used > first_run)
        assert source_of(app).metrics.budget.used > len(cloud.requests) - 5  # counted from the stored figure


async def test_a_spent_budget_sends_nothing(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    settings = settings_for(tmp_path, cloud, daily_budget=5000, reserved_requests=100)
    store = MetadataStore(settings.store_db_path)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await store.start()
    await store.put_value(KEY_BUDGET, orjson.dumps({"day": utc_day(time.time()), "used": 4900}).decode())
    await store.close()
    with capture_logs() as logs:
        async with running_app(settings) as (app, _):
            await wait_for(lambda: source_of(app).metrics.halted_reason == "budget")
    assert cloud.requests == []  # the run is over: nothing was sent before or after the halt
    halts = [e for e in logs if e["event"] == "switchbot.halted"]
    assert len(halts) == 1
    assert halts[0]["reason"] == "budget"


# --- quota and credentials ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("style", "reason"), [("190", "quota"), ("429", "quota"), ("401", "auth")])
async def test_quota_exhaustion_halts_polling_with_one_line_and_survives_a_restart(
    tmp_path: Path, cloud: FakeSwitchBotCloud, style: str, reason: str
) -> None:
    cloud.quota_after = 3
    cloud.quota_style = style  # type: ignore[assignment]
    settings = settings_for(tmp_path, cloud)
    with capture_logs() as logs:
        async with running_app(settings) as (app, _):
            await wait_for(lambda: source_of(app).metrics.halted_reason == reason)
            await wait_for(lambda: answered(cloud, source_of(app)))
            assert len(cloud.requests) == 4
            _, metrics = await http(app, "GET", "/metrics")
            assert f'homeiq_switchbot_polling_halted{{reason="{reason}"}} 1.0' in metrics.decode()
    assert len(cloud.requests) == 4  # stopped: no retry, no hammering for the rest of the run
    halts = [e for e in logs if e["event"] == "switchbot.halted"]
    assert len(halts) == 1
    assert halts[0]["log_level"] == "error"
    assert "resumes_at" in halts[0]
    assert cloud.token not in str(logs)
    assert cloud.secret not in str(logs)

    with capture_logs() as logs:  # restarted the same day with the same credentials: still halted
        async with running_app(settings) as (app, _):
            await wait_for(lambda: source_of(app).metrics.halted_reason == reason)
    assert len(cloud.requests) == 4
    assert [e.get("restored") for e in logs if e["event"] == "switchbot.halted"] == [True]


async def test_new_credentials_lift_a_halt(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    cloud.token = "the-real-token-abcdef0123456789"
    settings = settings_for(tmp_path, cloud, token="a-stale-token-00000000000000000")
    async with running_app(settings) as (app, _):
        await wait_for(lambda: source_of(app).metrics.halted_reason == "auth")
    assert len(cloud.requests) == 1
    assert cloud.bad_signatures[0].signature_problem == "Authorization is not the token"
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        assert source_of(app).metrics.halted_reason is None


async def test_polling_resumes_the_next_day(
    tmp_path: Path, cloud: FakeSwitchBotCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(switchbot_persistence, "RESUME_SLACK_S", 0.05)
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        source = source_of(app)
        real = time.time()
        offset = seconds_to_next_day(real) - 1.5  # the daemon's clock: 1.5 s before midnight UTC
        source._clock = lambda: time.time() + offset
        cloud.quota_after = len(cloud.requests)
        await wait_for(lambda: source.metrics.halted_reason == "quota")
        halted_at = len(cloud.requests)
        cloud.quota_after = None
        await wait_for(lambda: source.metrics.halted_reason is None, timeout_s=10)
        await wait_for(lambda: len(cloud.requests) > halted_at + 2)
        assert cloud.requests[halted_at].path == "/v1.1/devices"  # a new day starts with the device list


# --- webhook pushes ----------------------------------------------------------------------------------------------


async def test_webhook_push_is_stamped_with_its_sample_time_and_a_poll_repeating_it_adds_no_point(
    tmp_path: Path, cloud: FakeSwitchBotCloud
) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        source = source_of(app)
        assert app.pipeline is not None
        # The device reports 22.5: the cloud's status and the push say the same. (No poll of it meanwhile, so
        # that the push, not a poll, is the first to tell.)
        source._last_push["C271111EC0AB"] = time.monotonic() + 3600
        await wait_for(lambda: answered(cloud, source))  # a poll in flight has landed
        cloud.statuses["C271111EC0AB"]["temperature"] = 22.5
        sample_ms = int(time.time() * 1000)
        status, reply = await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}",
                                   push("C2:71:11:1E:C0:AB", sample_ms, temperature=22.5, humidity=52,
                                        scale="CELSIUS", battery=100))  # fmt: skip
        assert (status, reply) == (200, {"accepted": 1})  # humidity and battery did not change
        state = app.pipeline.states.get(METER)
        assert state is not None
        assert state.state == "22.5"
        assert state.last_updated_ns == sample_ms * 1_000_000
        polls = cloud.count("/v1.1/devices/C271111EC0AB/status")
        source._last_push.clear()  # poll it again at once, rather than after a poll interval
        await wait_for(lambda: cloud.count("/v1.1/devices/C271111EC0AB/status") >= polls + 3)
        app.pipeline.flush()
        # One flush, one batch: once two points are in, a wrong third from those polls would be there too.
        await wait_for_points(app, METER, 2)
        points = await history_points(app, METER)
        assert [(p.value, p.time_ns) for p in points][1:] == [(22.5, sample_ms * 1_000_000)]
        assert [p.value for p in points] == [26.1, 22.5]
        assert source.metrics.webhooks["accepted"] == 1


async def test_webhook_rejects_malformed_bodies_and_wrong_secrets(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud)) as (app, _):
        await wait_for(lambda: tracked(app, METER) == "26.1")
        source = source_of(app)
        good = push("C271111EC0AB", int(time.time() * 1000), temperature=20.0)
        assert (await http(app, "POST", "/switchbot/webhook/not-the-secret-0123456789", good))[0] == 404
        assert (await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}x", good))[0] == 404
        status, reply = await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}", b"{not json")
        assert status == 400
        assert "not JSON" in reply["error"]
        no_mac = orjson.dumps({"eventType": "changeReport", "context": {"deviceType": "WoMeter"}})
        status, _ = await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}", no_mac)
        assert status == 400
        status, _ = await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}", b"{" + b" " * 70_000 + b"}")
        assert status == 413
        status, reply = await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}", push("AABBCCDDEEFF", 1))
        assert (status, reply["ignored"]) == (200, "unknown device")
        assert source.metrics.webhooks == {"wrong_secret": 2, "malformed": 2, "ignored": 1}
        assert app.stats.malformed_messages["switchbot"] == 2
        assert tracked(app, METER) == "26.1"  # nothing from the rejected pushes
        status, metrics = await http(app, "GET", "/metrics")
        assert 'homeiq_switchbot_webhook_requests_total{outcome="malformed"} 2.0' in metrics.decode()


async def test_no_receiver_without_a_path_secret(tmp_path: Path, cloud: FakeSwitchBotCloud) -> None:
    async with running_app(settings_for(tmp_path, cloud, webhook_path_secret=None)) as (app, _):
        await wait_for(source_of(app).ready.is_set)
        good = push("C271111EC0AB", int(time.time() * 1000), temperature=20.0)
        assert (await http(app, "POST", f"/switchbot/webhook/{PATH_SECRET}", good))[0] == 404
