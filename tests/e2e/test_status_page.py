"""The status page in a real headless Chromium (Debian's), served by a running daemon connected to the real
Home Assistant and a real influxd, with an http.token (the page then authenticates like the API).

Covers: the page loads with no console error (failed loads and CSP violations count), the numbers it shows
are the API's, and it updates by itself when an event arrives from HA. A screenshot is kept next to the
daemon's log for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import browser
from tests.support.daemon_process import DaemonProcess, connected_config, wait_until
from tests.support.influxd import InfluxServer
from tests.support.real_ha import RealHomeAssistant

pytestmark = [pytest.mark.ha, pytest.mark.influxd]

TOKEN = "status-page-test-token"


@pytest.fixture
def daemon(tmp_path: Path, real_ha: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str) -> Iterator[
    DaemonProcess
]:
    config = connected_config(real_ha.base_url, real_ha.token, influxd_server.url, influx_db)
    with DaemonProcess(tmp_path, config, token=TOKEN) as process:
        yield process


@pytest.fixture
def driver(daemon: DaemonProcess) -> Iterator[Any]:
    reason = browser.missing()
    if reason is not None:
        pytest.fail(reason)  # scripts/test installs the browser; its absence is a broken setup, not a skip
    with browser.chromium(log_path=daemon.root / "chromedriver.log") as drv:
        # The browser would ask a person for the password (Basic, the token); the test sends it up front.
        drv.execute_cdp_cmd("Network.enable", {})
        drv.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": daemon.basic_auth()}})
        yield drv


def shown(drv: Any, element_id: str) -> str:
    value: str = drv.execute_script(f"return document.getElementById('{element_id}').dataset.value ?? null")
    return value


def refreshes(drv: Any) -> int:
    return int(drv.execute_script("return Number(document.body.dataset.refreshed || 0)"))


def page_matches_api(drv: Any, daemon: DaemonProcess) -> dict[str, Any] | None:
    """The API's document when every number the page shows equals it, else None."""
    api = daemon.status()
    expected = {
        "events-total": api["events"]["total"],
        "points-written": api["points"]["written"],
        "points-dropped": api["points"]["dropped"],
        "spool-points": api["spool"]["points"],
        "deadletter-count": api["dead_letters"]["count"],
        "hub-reconnects": api["home_assistant"]["reconnects"],
        "hub-state": api["home_assistant"]["state"],
        "sink-state": api["sink"]["state"],
    }
    for element_id, value in expected.items():
        if shown(drv, element_id) != str(value):
            return None
    busiest = drv.execute_script(
        "return [...document.querySelectorAll('#busiest tr')].map(r => [r.dataset.entity, r.lastChild.textContent])"
    )
    if busiest != [[b["entity_id"], f"{b['events']:,}"] for b in api["busiest"]]:
        return None
    if drv.find_element("id", "version").text != api["version"]:
        return None
    return api


def test_status_page_shows_the_api_and_follows_events(
    daemon: DaemonProcess, driver: Any, real_ha: RealHomeAssistant
) -> None:
    driver.get(daemon.base_url + "/")
    wait_until(lambda: refreshes(driver) >= 1, 30, "the page drew the status once")
    assert browser.console_errors(driver) == []

    api = wait_until(lambda: page_matches_api(driver, daemon), 30, "the page shows the API's numbers")
    assert api["home_assistant"]["connected"] is True
    assert driver.find_element("id", "hub-state").text == "connected"
    assert driver.find_element("id", "sink-state").text == "up"
    assert driver.find_element("id", "overall").text.lower() == api["status"]
    assert "InfluxDB" in driver.find_element("id", "sink-describe").text

    before = api["events"]["total"]
    seen_before = refreshes(driver)
    for value in ("21.5", "21.6", "21.7"):  # three changes: the busiest entity of a fresh HA
        real_ha.set_state("sensor.status_page_probe", value, {"unit_of_measurement": "°C", "friendly_name": "Probe"})
    after = wait_until(
        lambda: (doc := daemon.status())["events"]["total"] >= before + 3 and doc, 30, "the daemon took HA's events"
    )
    wait_until(lambda: refreshes(driver) > seen_before, 30, "the page refreshed by itself")
    wait_until(
        lambda: int(shown(driver, "events-total") or 0) >= after["events"]["total"],
        30,
        "the page shows the new event count",
    )
    wait_until(
        lambda: driver.execute_script("return document.querySelector('#busiest tr')?.dataset.entity")
        == "sensor.status_page_probe",
        30,
        "the probe entity tops the busiest list",
    )
    wait_until(lambda: page_matches_api(driver, daemon), 30, "the page still shows the API's numbers")
    assert browser.console_errors(driver) == []
    driver.save_screenshot(str(daemon.root / "status-page.png"))

