"""/metrics of a running daemon (real influxd, the example replayed, a webhook rule, HTTP on loopback) passes
``promtool check metrics`` (Debian package prometheus) and has histograms, not pre-computed averages."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from homeiq_daemon import __version__
from homeiq_daemon.webhooks.signing import encode_secret
from tests.support.daemon import daemon_settings, eventually, start_app, stop_app
from tests.support.influxd import InfluxServer, free_port

pytestmark = pytest.mark.influxd

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "home.jsonl"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as response:
        return response.read().decode()


async def test_metrics_pass_promtool_and_use_histograms(tmp_path: Path, influxd_server: InfluxServer) -> None:
    from homeiq_daemon.app import App  # noqa: PLC0415

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/system-deps.sh does)"
    port = free_port()
    settings = daemon_settings(
        tmp_path / "state",
        influxdb={"url": influxd_server.url, "database": "promtool"},
        replay={"path": str(EXAMPLE)},
        http={"enabled": True, "port": port},
        webhooks={
            "targets": {"rx": {"url": "http://127.0.0.1:9/hook", "secret": encode_secret(os.urandom(32))}},
            "rules": [{"name": "motion", "entities": ["binary_sensor.bathroom_motion"], "to": "on", "target": "rx"}],
        },
    )
    app = App(settings)
    task = await start_app(app)
    try:
        await eventually(lambda: app.stats.points_written > 500, "the replay written")
        text = await asyncio.to_thread(scrape, port)
    finally:
        await stop_app(app, task)

    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60,
                             check=False)  # fmt: skip
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")

    lines = text.splitlines()
    assert f'homeiq_build_info{{python="{platform.python_version()}",version="{__version__}"}} 1.0' in lines
    for histogram in ("homeiq_batch_points", "homeiq_flush_duration_seconds", "homeiq_tick_duration_seconds"):
        assert f"# TYPE {histogram} histogram" in lines, histogram
        assert any(line.startswith(f'{histogram}_bucket{{le="+Inf"}}') for line in lines), histogram
    batches = next(float(line.split()[-1]) for line in lines if line.startswith("homeiq_batch_points_count "))
    points = next(float(line.split()[-1]) for line in lines if line.startswith("homeiq_batch_points_sum "))
    assert batches >= 1
    written = next(line.split()[-1] for line in lines if line.startswith("homeiq_points_written_total "))
    assert points == float(written)
    replaced = ("homeiq_batch_points_recent_avg", "homeiq_batch_points_recent_max", "homeiq_tick_duration_seconds_avg")
    for gone in replaced:
        assert not any(line.startswith(gone) for line in lines), gone
