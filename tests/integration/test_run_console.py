"""`homeiq run` at a real terminal (a pty): the status page's URL, replay progress, "first points written"
and the heartbeat; Ctrl-C (SIGINT) stops it with exit 0. Without a terminal: the first-points event in the
log and no heartbeat line."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.terminal import read_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "home.jsonl"


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_") and k != "JOURNAL_STREAM"}
    env.update(HOMEIQ_STATE_DIR=str(state_dir), HOMEIQ_HTTP__PORT="0", HOMEIQ_LOG__LEVEL="warning")
    return env


def test_at_a_terminal_it_shows_url_progress_first_points_and_heartbeat(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "homeiq_daemon", "run", "--replay", str(EXAMPLE), "--keep-running"],
        stdin=follower, stdout=follower, stderr=follower, env=_env(tmp_path), close_fds=True,
    )
    os.close(follower)
    seen: list[str] = []
    try:
        text = read_until(leader, "(Ctrl-C stops)", seen, 60)
        url = text.split("status page at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        read_until(leader, "first points written (599 to embedded history store", seen, 60)
        text = read_until(leader, "points written · spool 0 points", seen, 60)  # the heartbeat (every 10 s)
        assert "replay  [####################] 100%  600/600 lines" in text
        with urllib.request.urlopen(url + "api/v1/status", timeout=10) as response:
            status = json.loads(response.read())
        assert status["points"]["written"] == 599
        assert [w["task"] for w in status["work"]] == ["replay"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(leader)


def test_without_a_terminal_the_log_has_first_points_and_no_heartbeat(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"HOMEIQ_LOG__LEVEL": "info", "HOMEIQ_LOG__FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-m", "homeiq_daemon", "run", "--replay", str(EXAMPLE)],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert "homeiq: " not in result.stderr
    assert events.count("homeiq.first_points_written") == 1
    assert "progress.done" in events  # the replay's progress, as a log line
