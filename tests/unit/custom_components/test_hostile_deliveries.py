"""The integration's verifier and replay memory against hostile deliveries: absurd timestamps are refused
deliveries (never OverflowError or ValueError), and replay protection is bounded by the tolerance window, not
by a count an attacker could flush, and survives a dump/load (HA's storage across a restart). Both modules
are loaded from their files: they run inside Home Assistant and import nothing of ours."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.webhooks import signing

COMPONENT = Path(__file__).resolve().parents[3] / "custom_components" / "homeiq_webhook"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"homeiq_webhook_{name}", COMPONENT / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


signature = _load("signature")
replay = _load("replay")
NOW = 1_700_000_000.0
KEY = os.urandom(32)


@pytest.mark.parametrize("digits", [13, 20, 400, 5000, 100_000])
def test_a_huge_timestamp_is_a_refused_delivery(digits: int) -> None:
    timestamp = "9" * digits
    headers = {"webhook-id": "msg_1", "webhook-timestamp": timestamp,
               "webhook-signature": "v1,AAAA"}  # fmt: skip
    with pytest.raises(signature.InvalidDelivery, match="not a number of seconds"):
        signature.verify([KEY], headers, b"{}", NOW)


@settings(max_examples=300, deadline=1000)
@given(timestamp=st.text(max_size=60) | st.integers().map(str))
def test_any_timestamp_text_is_either_verified_or_refused(timestamp: str) -> None:
    headers = signing.sign_headers([KEY], "msg_x", int(NOW), b"{}")
    headers["webhook-timestamp"] = timestamp
    with contextlib.suppress(signature.InvalidDelivery):  # any other exception fails the test
        signature.verify([KEY], headers, b"{}", NOW)


def test_unicode_digits_are_not_a_timestamp() -> None:
    headers = signing.sign_headers([KEY], "msg_u", int(NOW), b"{}")
    headers["webhook-timestamp"] = "\u0661\u0667" + "\u0660" * 8  # Arabic-Indic digits: isdigit() is true
    with pytest.raises(signature.InvalidDelivery):
        signature.verify([KEY], headers, b"{}", NOW)


def test_a_replay_is_caught_however_many_deliveries_came_in_between() -> None:
    seen = replay.SeenDeliveries()
    assert seen.first_time("msg_victim", NOW, 300, NOW)
    for i in range(5000):  # more than the old 1,024-id memory: it flushed the victim
        assert seen.first_time(f"msg_{i}", NOW + i * 0.01, 300, NOW + i * 0.01)
    assert not seen.first_time("msg_victim", NOW, 300, NOW + 100)


def test_ids_are_forgotten_only_after_their_window() -> None:
    seen = replay.SeenDeliveries()
    assert seen.first_time("msg_a", NOW, 300, NOW)
    assert not seen.first_time("msg_a", NOW, 300, NOW + 300)
    seen.prune(NOW + 302)  # past timestamp + tolerance (+1 s slack): verify() refuses it on its timestamp now
    assert len(seen) == 0


def test_the_memory_survives_dump_and_load() -> None:
    seen = replay.SeenDeliveries()
    seen.first_time("msg_kept", NOW, 300, NOW)
    seen.first_time("msg_old", NOW - 1000, 300, NOW - 1000)
    data = seen.dump()
    again = replay.SeenDeliveries()
    again.load([*data, "junk", [1, 2], ["msg_bad", "x"]], NOW + 10)
    assert not again.first_time("msg_kept", NOW, 300, NOW + 10)
    assert again.first_time("msg_old_is_gone", NOW + 10, 300, NOW + 10)
    assert len(again) == 2


def test_a_full_window_refuses_instead_of_forgetting() -> None:
    seen = replay.SeenDeliveries(max_remembered=3)
    for i in range(3):
        assert seen.first_time(f"msg_{i}", NOW, 300, NOW)
    with pytest.raises(replay.WindowFull):
        seen.first_time("msg_3", NOW, 300, NOW)
    assert not seen.first_time("msg_0", NOW, 300, NOW)  # still remembered
    assert seen.first_time("msg_3", NOW + 400, 300, NOW + 400)  # the window moved on: room again


def test_modules_import_nothing_of_the_daemon_or_ha() -> None:
    text = (COMPONENT / "replay.py").read_text()
    assert "homeiq_daemon" not in text
    assert "homeassistant" not in text
