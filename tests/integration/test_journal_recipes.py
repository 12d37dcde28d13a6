"""Every ``journalctl`` recipe in the docs, run by the real journalctl against what the daemon sent.

The daemon runs in-process with its journal renderer pointed at a test socket, against a real influxd, and
goes through what the recipes are about: the example recording replayed (a point InfluxDB refuses for its
field type becomes a dead letter about sensor.kitchen_temperature), an InfluxDB outage and recovery, the
periodic statistics line, and a withheld watchdog (the writer task gone). The entries become a real journal
file (tests/support/journal_file.py), and each recipe must print lines from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from homeiq_daemon.app import App
from homeiq_daemon.pipeline.batcher import Batch
from homeiq_daemon.runtime import systemd
from homeiq_daemon.runtime.logs import configure_logging
from tests.support.daemon import daemon_settings, eventually, start_app, stop_app
from tests.support.influxd import InfluxServer
from tests.support.journal_file import JOURNAL_REMOTE, JournalCollector, recipes, write_journal_file
from tests.support.notify import NotifyListener

pytestmark = pytest.mark.influxd

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = ROOT / "examples" / "home.jsonl"


@pytest.fixture
def collector() -> Iterator[JournalCollector]:
    directory = tempfile.mkdtemp(prefix="hiq-jr-", dir="/tmp")  # AF_UNIX paths are short
    saved = structlog.get_config()
    got = JournalCollector(Path(directory) / "socket")
    try:
        yield got
    finally:
        structlog.configure(**saved)
        got.close()
        shutil.rmtree(directory)


def _first_example_time_ns() -> int:
    first = json.loads(EXAMPLE.read_text().splitlines()[0])
    when = first["event"]["data"]["new_state"]["last_updated"]
    return int(datetime.fromisoformat(when).astimezone(UTC).timestamp()) * 1_000_000_000


async def _run_the_daemon(tmp_path: Path, influx: InfluxServer, collector: JournalCollector) -> None:
    assert configure_logging("journal", "info", journal_socket=collector.path) == (
        "journal-native"
    )
    influx.create_database("recipes")
    # A string 'value' in the shard the example lands in: the daemon's float for the same field is refused.
    status, body = influx.write(
        f'°C,domain=sensor,entity_id=kitchen_temperature value="text" {_first_example_time_ns()}'.encode(), "recipes"
    )
    assert status == 204, body
    settings = daemon_settings(
        tmp_path / "state",
        influxdb={"url": influx.url, "database": "recipes", "write_attempts": 1, "retry_max_s": 0.2,
                  "timeout_s": 2.0},
        replay={"path": str(EXAMPLE)},
        log={"format": "journal", "level": "info"},
        shutdown_timeout_s=5.0,
    )  # fmt: skip
    listener = NotifyListener()
    app = App(settings)
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": listener.env_value})
    service = systemd.ServiceNotifier(app, notifier, watchdog_s=0.4, status_interval_s=0.2)
    service.attach()
    try:
        task = await start_app(app)
        try:
            st = app.stats
            await eventually(lambda: st.dead_letter_points > 0 and st.points_written > 500, "replay written",
                             detail=lambda: (st.points_written, st.dead_letter_points))  # fmt: skip
            influx.kill()
            assert app.delivery is not None
            app.delivery.enqueue(Batch(["°C,domain=sensor,entity_id=kitchen_temperature value=20.5 1"]))
            await eventually(lambda: st.sink_state == "down", "the sink seen down")
            influx.start()
            await eventually(lambda: st.sink_state == "up", "the sink seen up again")
            await app._log_stats()  # the periodic statistics line (every 5 minutes otherwise)
            writer = next(t for t in asyncio.all_tasks() if t.get_name() == "homeiq-delivery-writer")
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await eventually(lambda: "systemd.watchdog_withheld" in collector.events(), "the watchdog withheld")
        finally:
            await stop_app(app, task)
    finally:
        service.close()
        listener.close()


def _journalctl(recipe: str, journal: Path) -> subprocess.CompletedProcess[str]:
    command, _, pipe = recipe.partition(" | ")
    argv = shlex.split(command, comments=True)
    assert argv[0] == "journalctl"
    argv = ["journalctl", f"--file={journal}", "--no-pager", *argv[1:]]
    if "-f" in argv:  # follow: the lines already there come first; read until one arrived, then stop
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                assert proc.stdout is not None
                first = proc.stdout.readline()
            finally:
                proc.terminate()
            return subprocess.CompletedProcess(argv, 0, first, proc.stderr.read() if proc.stderr else "")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if not pipe or result.returncode != 0:
        return result
    return subprocess.run(pipe, shell=True, input=result.stdout, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


async def test_every_journalctl_recipe_in_the_docs_prints_lines(
    tmp_path: Path, influxd_private: InfluxServer, collector: JournalCollector
) -> None:
    for tool in (JOURNAL_REMOTE, shutil.which("journalctl") or "journalctl", shutil.which("jq") or "jq"):
        assert Path(tool).exists(), f"{tool}: apt-get install systemd systemd-journal-remote jq"
    await _run_the_daemon(tmp_path, influxd_private, collector)
    entries = list(collector.entries)
    journal = tmp_path / "homeiq.journal"
    # The same run once more as an earlier boot, for `journalctl -b -1`.
    write_journal_file(journal, previous_boot=entries, this_boot=entries)

    found = recipes(*DOCS)
    assert len(found) >= 12, found
    outputs = {}
    for where, recipe in found:
        result = _journalctl(recipe, journal)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert result.returncode == 0, f"{where}: {recipe}\n{result.stderr}"
        assert lines, f"{where}: {recipe} printed nothing"
        outputs[recipe] = lines

    one_entity = next(lines for recipe, lines in outputs.items() if "HOMEIQ_ENTITY_ID=" in recipe)
    assert any("event=influx.dead_letter" in line and "kitchen_temperature" in line for line in one_entity)
    outages = next(lines for recipe, lines in outputs.items() if "HOMEIQ_EVENT=sink.down" in recipe)
    assert any("event=sink.down" in line for line in outages)
    assert any("event=sink.up" in line for line in outages)
    events = next(lines for recipe, lines in outputs.items() if recipe.startswith("journalctl -F HOMEIQ_EVENT"))
    assert {"pipeline.stats", "sink.down", "sink.up", "influx.dead_letter", "systemd.watchdog_withheld"} <= set(events)
