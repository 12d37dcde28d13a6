"""A real ``influxd`` (Debian's influxdb 1.6.x) on free loopback ports, in a temporary directory.

Tests use it to write and read back, and to inject faults the real way: SIGKILL (a crash), SIGSTOP/SIGCONT
(a hung server that accepts connections but never answers), restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def influxd_binary() -> str | None:
    return shutil.which("influxd") or (str(Path("/usr/bin/influxd")) if Path("/usr/bin/influxd").exists() else None)


CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  wal-fsync-delay = "0s"
[coordinator]
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  write-tracing = false
  max-body-size = {max_body_size}
  auth-enabled = {auth_enabled}
[logging]
  level = "warn"
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""


class InfluxServer:
    def __init__(self, root: Path, *, max_body_size: int = 0, auth_enabled: bool = False) -> None:
        binary = influxd_binary()
        if binary is None:
            raise RuntimeError("influxd not found: apt-get install influxdb (the CI script does)")
        self.binary = binary
        self.root = root
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = root / "influxdb.conf"
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(CONFIG.format(root=root, http_port=self.http_port, rpc_port=self.rpc_port,
                                                  max_body_size=max_body_size,
                                                  auth_enabled="true" if auth_enabled else "false"))
        self.log_path = root / "influxd.log"

    def start(self, timeout_s: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-config", str(self.config_path)], stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"influxd did not answer within {timeout_s}s: {self.log_path.read_text()[-2000:]}")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
                return bool(resp.status == 204)
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    # --- faults ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL: a crash. Connections are refused until ``start``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel does), nothing ever answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    # --- client helpers -------------------------------------------------------------------------

    def query(self, q: str, db: str | None = None, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``series`` of the first statement (empty list when none)."""
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return list(result.get("series", []))

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Rows of every series as dicts (column -> value), with the series' tags merged in."""
        out = []
        for series in self.query(q, db):
            tags = series.get("tags", {})
            for values in series.get("values", []):
                row = dict(zip(series["columns"], values, strict=True))
                row.update(tags)
                row["_measurement"] = series["name"]
                out.append(row)
        return out

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def write(self, body: bytes, db: str) -> tuple[int, str]:
        req = urllib.request.Request(f"{self.url}/write?db={urllib.parse.quote(db)}&precision=ns", data=body)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
