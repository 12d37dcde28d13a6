"""Start-up time: process start -> ``READY=1`` on a real notify socket, and RSS at that moment.

The daemon runs as the unit runs it (``homeiq run`` with ``$NOTIFY_SOCKET`` and a watchdog), with the
embedded default (no Home Assistant, no InfluxDB: READY does not wait for a hub) and the HTTP server on an
ephemeral loopback port. Compared in the same run, measured the same way (spawn -> READY=1 datagram):

* ``python -c pass``-like floor: an interpreter that only sends READY=1;
* ``import aiohttp`` floor: the same after importing aiohttp (the daemon cannot start faster than that).

Prints one JSON object. Reproduce with:

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOMEIQ = Path(sys.executable).with_name("homeiq")

_NOTIFY = (
    "import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "a = os.environ['NOTIFY_SOCKET']; s.sendto(b'READY=1', '\\0' + a[1:] if a[0] == '@' else a); "
    "import time; time.sleep(30)"
)
REFERENCES = {
    "python_pass": [sys.executable, "-c", _NOTIFY],
    "python_import_aiohttp": [sys.executable, "-c", "import aiohttp; " + _NOTIFY],
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(argv: list[str], env: dict[str, str], timeout_s: float = 60.0) -> dict[str, float]:
    """Spawn, wait for READY=1, read RSS, then SIGTERM and time the exit."""
    name = f"homeiq-bench-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(timeout_s)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**env, "NOTIFY_SOCKET": "@" + name}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            data = sock.recv(4096)
            if b"READY=1" in data.split(b"\n"):
                break
        ready_s = time.perf_counter() - started
        rss = rss_mb(proc.pid)
        stop_started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stop_s = time.perf_counter() - stop_started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    return {"ready_s": ready_s, "rss_mb": rss, "stop_s": stop_s}


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    ready = [s["ready_s"] for s in samples]
    return {
        "ready_s_median": round(statistics.median(ready), 3),
        "ready_s_min": round(min(ready), 3),
        "ready_s_max": round(max(ready), 3),
        "rss_mb_at_ready_median": round(statistics.median(s["rss_mb"] for s in samples), 1),
        "stop_s_median": round(statistics.median(s["stop_s"] for s in samples), 3),
        "runs": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "WATCHDOG_"))}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="homeiq-bench-") as tmp:
        daemon_env = {
            **base_env,
            "WATCHDOG_USEC": "60000000",
            "STATE_DIRECTORY": str(Path(tmp) / "state"),
            "CONFIGURATION_DIRECTORY": str(Path(tmp) / "etc"),  # no homeiq.toml there: all defaults
            "HOMEIQ_HTTP__PORT": "0",
            "HOMEIQ_LOG__FORMAT": "json",
        }
        # One untimed run of each first: the file cache is warm for all of them alike (.pyc files exist).
        measure([str(HOMEIQ), "run"], daemon_env)
        for argv in REFERENCES.values():
            measure(argv, base_env)
        daemon: list[dict[str, float]] = []
        refs: dict[str, list[dict[str, float]]] = {name: [] for name in REFERENCES}
        for _ in range(args.runs):  # interleaved, so a burst of load elsewhere hits all alike
            daemon.append(measure([str(HOMEIQ), "run"], daemon_env))
            for name, argv in REFERENCES.items():
                refs[name].append(measure(argv, base_env))
    results["homeiq_run_embedded"] = summarize(daemon)
    for name, samples in refs.items():
        results[name] = summarize(samples)
    floor = results["python_import_aiohttp"]["ready_s_median"]
    results["homeiq_over_import_aiohttp_s"] = round(results["homeiq_run_embedded"]["ready_s_median"] - floor, 3)
    results["target_ready_s"] = 1.5
    results["meets_target"] = results["homeiq_run_embedded"]["ready_s_median"] < 1.5
    results["python"] = sys.version.split()[0]
    results["cpus"] = os.cpu_count()
    results["loadavg_1m"] = os.getloadavg()[0]
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    results["command"] = f"{python} bench/startup.py --runs {args.runs}"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
