"""scripts/run, the README's first command, with no Home Assistant configured: the demo replays into its own
state dir, a second run adds no point, and at a terminal it stays up with the status page and its URL until
Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import signal
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

from tests.support.terminal import read_until

ROOT = Path(__file__).resolve().parents[2]


def _env(demo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_") and k != "JOURNAL_STREAM"}
    env.update(HOMEIQ_DEMO_DIR=str(demo), HOMEIQ_HTTP__PORT="0")
    return env


def _points(demo: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{demo / 'state' / 'history.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT entity_id, time_ns FROM points ORDER BY entity_id, time_ns").fetchall()
    finally:
        conn.close()


def test_demo_twice_writes_the_same_points_into_its_own_dir(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    first = subprocess.run([str(ROOT / "scripts" / "run"), "--once"], cwd=ROOT, env=_env(demo), capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    anchor = (demo / "anchor").read_text()
    points = _points(demo)
    assert len(points) == 599
    assert "°C" in first.stdout  # the history it shows
    second = subprocess.run([str(ROOT / "scripts" / "run")], cwd=ROOT, env=_env(demo), capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]  # no terminal: exits after the replay
    assert (demo / "anchor").read_text() == anchor
    assert _points(demo) == points


def test_at_a_terminal_the_demo_stays_up_with_the_status_page(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=_env(tmp_path / "demo"), stdin=follower,
                            stdout=follower, stderr=follower, close_fds=True, start_new_session=True)  # fmt: skip
    os.close(follower)
    seen: list[str] = []
    try:
        text = read_until(leader, "(Ctrl-C stops)", seen, 300)
        url = text.split("status page at ", 1)[1].split()[0]
        read_until(leader, "first points written", seen, 60)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"<title>homeiq status</title>" in response.read()
        with urllib.request.urlopen(url + "api/v1/status", timeout=10) as response:
            assert json.loads(response.read())["points"]["written"] == 599
        assert proc.poll() is None  # still up after the replay
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        os.close(leader)
