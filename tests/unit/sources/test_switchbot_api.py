"""SwitchBot Cloud API, sans-IO: signing (against the switchbot-api package and openssl), answers, the device
list, and the budget arithmetic (property-tested: the daemon never plans more requests than it may make)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.errors import HomeIQError, ProtocolError
from homeiq_daemon.sources.switchbot.api import (
    DAY_S,
    RESERVE_BLOCK,
    DailyBudget,
    SwitchBotAuthError,
    SwitchBotDevice,
    SwitchBotQuotaError,
    SwitchBotRequestError,
    SwitchBotTransientError,
    credential_fingerprint,
    parse_device_list,
    parse_response,
    poll_interval_s,
    request_spacing_s,
    seconds_to_next_day,
    select_devices,
    signature,
    signed_headers,
    utc_day,
)
from tests.support.hypo import examples
from tests.support.switchbot_oracle import package_headers, verify

# --- signing ---------------------------------------------------------------------------------------------------

# printf '%s' 'tok1661927531000abc' | openssl dgst -sha256 -hmac sec -binary | openssl base64
OPENSSL_VECTOR = "xifej0aQRPV3yiIcv+TpZtC/9nDB4YC9iw7Si2180jE="

tokens = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=120)


def test_signature_matches_openssl() -> None:
    assert signature("tok", "sec", 1661927531000, "abc") == OPENSSL_VECTOR
    assert signature("tok", "sec", "1661927531000", "abc") == OPENSSL_VECTOR


@settings(max_examples=examples(300), deadline=None)
@given(token=tokens, secret=tokens, t=st.integers(10**12, 10**13 - 1), nonce=st.uuids().map(str) | tokens)
def test_signature_equals_the_switchbot_api_package(token: str, secret: str, t: int, nonce: str) -> None:
    ours = signed_headers(token, secret, t_ms=t, nonce=nonce)
    theirs = package_headers(token, secret, str(t), nonce)
    assert ours["sign"] == theirs["sign"]
    assert {k: ours[k] for k in ("Authorization", "t", "nonce")} == {k: theirs[k] for k in ("Authorization", "t",
                                                                                            "nonce")}  # fmt: skip


@settings(max_examples=examples(100), deadline=None)
@given(token=tokens, secret=tokens, other=tokens)
def test_fresh_headers_verify_and_a_wrong_secret_does_not(token: str, secret: str, other: str) -> None:
    headers = signed_headers(token, secret)
    assert verify(headers, token, secret) is None
    assert len(headers["t"]) == 13
    if other != secret:
        assert verify(headers, token, other) == "sign does not match"


def test_fresh_nonces_differ() -> None:
    assert len({signed_headers("t", "s")["nonce"] for _ in range(50)}) == 50


def test_credential_fingerprint_is_one_way_and_tells_credentials_apart() -> None:
    a = credential_fingerprint("token-a", "secret")
    assert a == credential_fingerprint("token-a", "secret")
    assert a != credential_fingerprint("token-b", "secret")
    assert a != credential_fingerprint("token-a", "secret2")
    assert "token" not in a
    assert "secret" not in a


# --- answers ---------------------------------------------------------------------------------------------------


def _envelope(code: int, body: object = None, message: str = "success") -> bytes:
    return orjson.dumps({"statusCode": code, "body": body if body is not None else {}, "message": message})


def test_success_returns_the_body() -> None:
    assert parse_response(200, _envelope(100, {"deviceList": []})) == {"deviceList": []}


@pytest.mark.parametrize(
    ("status", "raw", "error"),
    [
        (200, _envelope(190, message="Requests reached the daily limit"), SwitchBotQuotaError),
        (200, _envelope(190, message="Too many Request"), SwitchBotQuotaError),
        (429, b'{"message":"Too Many Requests"}', SwitchBotQuotaError),
        (401, b'{"message":"Unauthorized"}', SwitchBotAuthError),
        (403, b'{"message":"Forbidden"}', SwitchBotAuthError),
        (500, b"oops", SwitchBotTransientError),
        (503, b"", SwitchBotTransientError),
        (200, b"<html>", SwitchBotTransientError),
        (200, b"[1,2]", SwitchBotTransientError),
        (200, b'{"body":{}}', SwitchBotTransientError),
        (200, _envelope(161, message="device offline"), SwitchBotRequestError),
        (200, _envelope(171, message=""), SwitchBotRequestError),
        (200, _envelope(190, message="System error"), SwitchBotRequestError),
        (400, b"{}", SwitchBotRequestError),
    ],
)
def test_failures_are_classified(status: int, raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_response(status, raw)


def test_device_offline_keeps_its_code() -> None:
    with pytest.raises(SwitchBotRequestError) as caught:
        parse_response(200, _envelope(171, message=""))
    assert caught.value.status_code == 171
    assert "hub device is offline" in str(caught.value)


@settings(max_examples=examples(300))
@given(status=st.integers(100, 599), raw=st.binary(max_size=200))
def test_any_answer_gives_a_body_or_a_switchbot_error(status: int, raw: bytes) -> None:
    kinds = (SwitchBotQuotaError, SwitchBotAuthError, SwitchBotTransientError, SwitchBotRequestError)
    error: HomeIQError | None = None
    try:
        parse_response(status, raw)
    except HomeIQError as exc:
        error = exc
    if error is None:
        assert status < 400  # a body only from a 1xx-3xx answer
    else:
        assert type(error) in kinds


# --- the device list (the README's sample, plus types from its tables) ----------------------------------------

DEVICE_LIST = {
    "deviceList": [
        {"deviceId": "500291B269BE", "deviceName": "Living Room Humidifier", "deviceType": "Humidifier",
         "enableCloudService": True, "hubDeviceId": "000000000000"},
        {"deviceId": "C271111EC0AB", "deviceName": "Meter", "deviceType": "Meter", "enableCloudService": True,
         "hubDeviceId": "FA7310762361"},
        {"deviceId": "FA7310762361", "deviceName": "Hub Mini 61", "deviceType": "Hub Mini",
         "enableCloudService": False, "hubDeviceId": "000000000000"},
        {"deviceId": "D1A2B3C4D5E6", "deviceName": "Off meter", "deviceType": "MeterPlus",
         "enableCloudService": False, "hubDeviceId": "FA7310762361"},
        {"deviceName": "no id"},
        "junk",
    ],
    "infraredRemoteList": [
        {"deviceId": "02-202008110034-13", "deviceName": "Living Room TV", "remoteType": "TV",
         "hubDeviceId": "FA7310762361"}
    ],
}  # fmt: skip


def test_device_list_keeps_physical_devices() -> None:
    devices = parse_device_list(DEVICE_LIST)
    assert [d.device_id for d in devices] == ["500291B269BE", "C271111EC0AB", "FA7310762361", "D1A2B3C4D5E6"]
    humidifier, meter, hub, _ = devices
    assert humidifier.hub_device_id is None  # "000000000000": no hub
    assert meter.hub_device_id == "FA7310762361"
    assert hub.cloud_service is False
    with pytest.raises(ProtocolError):
        parse_device_list({"deviceList": "nope"})
    with pytest.raises(ProtocolError):
        parse_device_list([])


def test_selection_all_means_readable_devices_with_cloud_service() -> None:
    devices = parse_device_list(DEVICE_LIST)
    chosen, missing = select_devices(devices, [])
    assert [d.device_id for d in chosen] == ["500291B269BE", "C271111EC0AB"]
    assert missing == []


def test_selection_by_id_or_name_polls_whatever_the_type() -> None:
    devices = parse_device_list(DEVICE_LIST)
    chosen, missing = select_devices(devices, ["hub mini 61", "c271111ec0ab", "Kitchen"])
    assert [d.device_id for d in chosen] == ["C271111EC0AB", "FA7310762361"]
    assert missing == ["Kitchen"]


# --- budget ----------------------------------------------------------------------------------------------------

MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_utc_day_boundaries() -> None:
    assert utc_day(MIDNIGHT - 0.001) == "2025-12-31"
    assert utc_day(MIDNIGHT) == "2026-01-01"
    assert seconds_to_next_day(MIDNIGHT - 2.5) == pytest.approx(2.5)
    assert seconds_to_next_day(MIDNIGHT) == pytest.approx(DAY_S)


def test_default_plan_for_one_and_many_devices() -> None:
    usable, list_every = 9000, 21_600.0  # defaults: 10,000 - 1,000 reserved; device list every 6 h
    assert poll_interval_s(1, usable, list_every, 60.0) == pytest.approx(60.0)
    assert poll_interval_s(20, usable, list_every, 60.0) == pytest.approx(DAY_S / (8995 // 20))
    assert poll_interval_s(0, usable, list_every, 60.0) == DAY_S
    assert poll_interval_s(5, 4, list_every, 60.0) == math.inf  # the device list alone takes it all


@settings(max_examples=examples(500))
@given(
    devices=st.integers(1, 20_000),
    usable=st.integers(1, 1_000_000),
    list_every=st.floats(600, 604_800),
    min_interval=st.floats(0.001, 86_400),
)
def test_poll_plan_never_exceeds_the_budget_over_a_day(
    devices: int, usable: int, list_every: float, min_interval: float
) -> None:
    interval = poll_interval_s(devices, usable, list_every, min_interval)
    list_calls = math.ceil(DAY_S / list_every) + 1
    if math.isinf(interval):
        assert usable <= list_calls
        return
    assert interval >= min_interval
    spacing = interval / devices  # devices polled round-robin, one request per slot, starting at t=0
    slots_in_a_day = math.ceil(DAY_S / spacing)
    assert slots_in_a_day + list_calls <= usable


@settings(max_examples=examples(300), deadline=None)
@given(
    start_s=st.floats(0, DAY_S - 1),
    cap=st.integers(1, 20_000),
    used=st.integers(0, 20_000),
    nominal=st.floats(0.0001, 3600),
)
def test_adaptive_spacing_makes_the_requests_left_last_until_midnight(
    start_s: float, cap: int, used: int, nominal: float
) -> None:
    """Simulate the rest of a day: requests at the pace ``request_spacing_s`` sets, from any point of the
    day and any count already spent (a restart), never pass the cap before midnight."""
    now = MIDNIGHT + start_s
    end = MIDNIGHT + DAY_S
    left = max(0, cap - used)
    sent = 0
    while now < end and sent <= cap:
        if left > 0:
            sent += 1
            left -= 1
        now += request_spacing_s(nominal, end - now, left)
    assert sent <= max(0, cap - used)


def test_budget_persists_ahead_in_blocks_and_rolls_over_at_midnight() -> None:
    budget = DailyBudget(cap=50, day=utc_day(MIDNIGHT - 10))
    assert budget.take(MIDNIGHT - 10)
    assert budget.reservation() == {"day": "2025-12-31", "used": RESERVE_BLOCK}
    for _ in range(RESERVE_BLOCK - 1):
        assert budget.take(MIDNIGHT - 10)
        assert budget.reservation() is None
    assert budget.take(MIDNIGHT - 10)
    assert budget.reservation() == {"day": "2025-12-31", "used": 2 * RESERVE_BLOCK}
    while budget.take(MIDNIGHT - 10):
        budget.reservation()
    assert budget.used == 50
    assert budget.persisted == 50  # never a reservation beyond the cap
    assert not budget.take(MIDNIGHT - 1)
    assert budget.take(MIDNIGHT + 1)  # a new UTC day
    assert budget.used == 1
    assert budget.day == "2026-01-01"


def test_budget_restore_counts_the_persisted_reservation_as_spent() -> None:
    stored = {"day": "2026-01-01", "used": 40}
    assert DailyBudget.restore(100, stored, MIDNIGHT + 5).used == 40
    assert DailyBudget.restore(100, stored, MIDNIGHT + DAY_S + 5).used == 0  # yesterday's count
    assert DailyBudget.restore(100, {"day": "2026-01-01", "used": "x"}, MIDNIGHT).used == 0
    assert DailyBudget.restore(100, None, MIDNIGHT).used == 0


def test_device_dataclass_is_frozen() -> None:
    device = SwitchBotDevice("A", "a", "Meter")
    with pytest.raises(AttributeError):
        device.name = "b"  # type: ignore[misc]
