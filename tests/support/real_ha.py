"""The real Home Assistant package (2024.3.3) as a subprocess on a free loopback port, for end-to-end tests.

``scripts/ensure-ha.sh`` builds HA's own virtualenv (cached under ~/.cache/homeiq-test); this module writes a
small ``configuration.yaml`` (no ``default_config:``), starts ``hass --skip-pip`` so nothing is ever
installed or fetched at test time, creates the owner user through HA's onboarding HTTP flow and a
long-lived access token over the WebSocket API, exactly as a person setting up HA would, and offers the few
REST helpers tests need. ``stop()`` always ends the process: SIGTERM, then SIGKILL after a bound.

The same config directory survives ``restart()``: the user, the token and the entities restored by HA stay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure-ha.sh"
HA_VERSION = "2024.3.3"
# Keep in step with INTEGRATIONS in scripts/ensure-ha.sh (which installs what they need at runtime).
INTEGRATIONS = (
    "http", "api", "websocket_api", "webhook", "automation", "input_text", "input_number", "input_boolean",
    "recorder", "history",
)  # fmt: skip

# A failed WebSocket or REST login makes HA log this line (homeassistant/components/http/ban.py).
INVALID_AUTH_LOG = "Login attempt or request with invalid authentication"
BANNED_LOG = "Banned IP"

_CONFIG = """\
homeassistant:
  name: homeiq e2e
  # Location, zone and currency set: otherwise HA may try to detect them over the internet.
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
  internal_url: "http://127.0.0.1:{port}"
http:
  server_host: 127.0.0.1
  server_port: {port}
  ip_ban_enabled: true
  login_attempts_threshold: {login_attempts_threshold}
api:
websocket_api:
webhook:
automation: !include automations.yaml
input_text:
{input_text}
input_number:
{input_number}
input_boolean:
{input_boolean}
{recorder}logger:
  default: warning
  logs:
    homeassistant.bootstrap: info
"""


class HomeAssistantStartError(RuntimeError):
    """HA did not come up within the bound; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_ha_venv(timeout_s: float = 1800.0) -> Path:
    """Run scripts/ensure-ha.sh (a no-op once the cached venv is complete) and return the venv path."""
    # The test venv's Python settings must not leak into pip runs for HA's venv.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=timeout_s, check=False, env=env
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-30:])
        raise RuntimeError(f"scripts/ensure-ha.sh failed with exit code {result.returncode}:\n{tail}")
    venv = Path(result.stdout.strip().splitlines()[-1])
    if not (venv / "bin" / "hass").exists():
        raise RuntimeError(f"scripts/ensure-ha.sh printed {venv}, which holds no bin/hass")
    return venv


def _yaml_block(mapping: dict[str, dict[str, Any]]) -> str:
    # JSON is valid YAML: one flow mapping per helper, indented under the domain key.
    return "\n".join(f"  {key}: {json.dumps(value)}" for key, value in mapping.items())


def _run_in_thread(coro: Any) -> Any:
    """Run a coroutine on a loop of its own: callers may be inside pytest-asyncio's running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class RealHomeAssistant:
    """One HA instance in ``root`` (config dir, console log, saved credentials)."""

    def __init__(
        self,
        root: Path,
        venv: Path,
        *,
        port: int | None = None,
        login_attempts_threshold: int = 5,
        startup_timeout_s: float = 120.0,
        input_text: dict[str, dict[str, Any]] | None = None,
        input_number: dict[str, dict[str, Any]] | None = None,
        input_boolean: dict[str, dict[str, Any]] | None = None,
        extra_yaml: str = "",
        secrets: dict[str, str] | None = None,
        recorder: bool = False,
        commit_interval_s: int = 1,
        recorder_exclude: list[str] | None = None,
    ) -> None:
        self.root = root
        self.venv = venv
        self.port = port or free_port()
        self.login_attempts_threshold = login_attempts_threshold
        self.startup_timeout_s = startup_timeout_s
        self.config_dir = root / "config"
        self.automations_path = self.config_dir / "automations.yaml"
        self.console_log = root / "ha-console.log"
        self._credentials_path = root / "credentials.json"
        self._helpers = {
            "input_text": input_text or {"e2e_note": {"name": "e2e note", "max": 255}},
            "input_number": input_number or {"e2e_level": {"name": "e2e level", "min": 0, "max": 100, "step": 0.5}},
            "input_boolean": input_boolean or {"e2e_switch": {"name": "e2e switch"}},
        }
        self.extra_yaml = extra_yaml
        """Appended to configuration.yaml as written (more integrations, e.g. an ``influxdb:`` block)."""
        self.secrets = secrets or {}
        """Written to secrets.yaml beside it, for ``!secret`` references in ``extra_yaml``."""
        self.recorder = recorder
        """Load ``recorder:`` (SQLite in the config dir, committing every ``commit_interval_s``) and ``history:``."""
        self.commit_interval_s = commit_interval_s
        self.recorder_exclude = recorder_exclude or []
        """Entities the recorder leaves out (its ``exclude: entities:``)."""
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.token = ""
        self.startup_s: float | None = None
        """Seconds from spawning the process to HA answering as RUNNING (the last start)."""

    # --- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    # --- lifecycle ---------------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        recorder = ""
        if self.recorder:
            # A short commit interval keeps tests fast; HA's default is 5 s.
            recorder = (
                f'recorder:\n  db_url: "sqlite:///{self.config_dir / "home-assistant_v2.db"}"\n'
                f"  commit_interval: {self.commit_interval_s}\n  purge_keep_days: 10\n"
            )
            if self.recorder_exclude:
                recorder += "  exclude:\n    entities:\n" + "".join(f"      - {e}\n" for e in self.recorder_exclude)
            recorder += "history:\n"
        text = _CONFIG.format(
            port=self.port,
            login_attempts_threshold=self.login_attempts_threshold,
            recorder=recorder,
            **{domain: _yaml_block(helpers) for domain, helpers in self._helpers.items()},
        )
        (self.config_dir / "configuration.yaml").write_text(text + self.extra_yaml)
        if self.secrets:
            lines = [f"{name}: {json.dumps(value)}" for name, value in self.secrets.items()]
            (self.config_dir / "secrets.yaml").write_text("\n".join(lines) + "\n")
        if not self.automations_path.exists():
            self.automations_path.write_text("[]\n")

    def _environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # The test venv's Python settings and our own settings mean nothing to HA; SUPERVISOR would make
            # HA load the hassio integration.
            if not key.startswith(("PYTHON", "HOMEIQ_", "VIRTUAL_ENV", "PYTEST", "SUPERVISOR"))
        }
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def start(self) -> None:
        """Start HA and wait until it runs; onboard and create a token on the first start. Bounded."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("Home Assistant is already running")
        self._write_config()
        started = time.monotonic()
        deadline = started + self.startup_timeout_s
        with self.console_log.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')} port {self.port} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "hass"), "-c", str(self.config_dir), "--skip-pip", "--log-no-color"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=self.root,
                start_new_session=True,  # its own process group: stop() signals HA and anything it spawned
            )
        self._log_offset = self.console_log.stat().st_size
        try:
            self._wait_http(deadline)
            if self._credentials_path.exists():
                self.token = json.loads(self._credentials_path.read_text())["token"]
            else:
                self.token = self._onboard(deadline)
                self._credentials_path.write_text(json.dumps({"token": self.token}))
            self._wait_running(deadline)
            if "Setup failed for" in self.log_text()[self._log_offset :]:
                # An integration lacks a package or broke: tests would fail later and more confusingly.
                raise self._fail("could not set up every integration")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, wait up to ``timeout_s`` for HA's own shutdown, then SIGKILL. Never raises on a dead process."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # Anything HA started in its group and left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> RealHomeAssistant:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- logs --------------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything HA wrote to its console, across restarts."""
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def count_in_log(self, needle: str, since_offset: int = 0) -> int:
        return self.log_text()[since_offset:].count(needle)

    def log_size(self) -> int:
        return len(self.log_text())

    def _fail(self, why: str) -> HomeAssistantStartError:
        return HomeAssistantStartError(f"Home Assistant {HA_VERSION} {why}. Last log lines:\n{self.log_tail()}")

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise self._fail(f"exited with code {self.process.returncode} during start")
        if "Activating recovery mode" in self.log_text()[self._log_offset :]:
            # Recovery mode serves no api/websocket_api: an integration lacks a Python package
            # (see scripts/ensure-ha.sh), and waiting would only hide that.
            raise self._fail("fell back to recovery mode")
        if time.monotonic() > deadline:
            raise self._fail(f"did not start within {self.startup_timeout_s:g} s")

    # --- start-up steps ----------------------------------------------------------------------------

    def _wait_http(self, deadline: float) -> None:
        # /api/onboarding needs no authentication: polling it never counts as a failed login.
        while True:
            self._check_alive(deadline)
            try:
                status, _ = self._request("GET", "/api/onboarding", auth=False, timeout_s=2.0)
            except (urllib.error.URLError, OSError, TimeoutError):
                status = 0
            if status == 200:
                return
            time.sleep(0.1)

    def _wait_running(self, deadline: float) -> None:
        while True:
            self._check_alive(deadline)
            status, body = self._request("GET", "/api/config", timeout_s=5.0)
            if status == 200 and body.get("state") == "RUNNING":
                return
            time.sleep(0.1)

    def _onboard(self, deadline: float) -> str:
        """Owner user via onboarding -> auth code -> access token -> long-lived token over the WebSocket."""
        client_id = f"{self.base_url}/"
        status, body = self._request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Test Owner",
                "username": "owner",
                "password": uuid.uuid4().hex,
                "language": "en",
            },
            auth=False,
        )
        if status != 200 or "auth_code" not in body:
            raise self._fail(f"refused the onboarding user step ({status} {body})")
        form = urllib.parse.urlencode(
            {"grant_type": "authorization_code", "code": body["auth_code"], "client_id": client_id}
        ).encode()
        request = urllib.request.Request(f"{self.base_url}/auth/token", data=form, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            access_token = json.loads(response.read())["access_token"]
        remaining = max(5.0, deadline - time.monotonic())
        token: str = _run_in_thread(self._create_long_lived_token(access_token, remaining))
        return token

    async def _create_long_lived_token(self, access_token: str, timeout_s: float) -> str:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.websocket_url) as ws:
            async with asyncio.timeout(timeout_s):
                assert (await ws.receive_json())["type"] == "auth_required"
                await ws.send_json({"type": "auth", "access_token": access_token})
                reply = await ws.receive_json()
                if reply.get("type") != "auth_ok":
                    raise self._fail(f"refused the fresh access token: {reply}")
                await ws.send_json(
                    {
                        "id": 1,
                        "type": "auth/long_lived_access_token",
                        # client_name must be unique per user.
                        "client_name": f"homeiq-e2e-{uuid.uuid4().hex[:8]}",
                        "lifespan": 365,
                    }
                )
                result = await ws.receive_json()
        if not result.get("success"):
            raise self._fail(f"refused to create a long-lived token: {result}")
        return str(result["result"])

    # --- REST helpers ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        timeout_s: float = 15.0,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return status, body

    def _ok(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        status, body = self._request(method, path, payload)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {body}")
        return body

    def set_state(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /api/states/<entity_id>``; returns the state HA stored (with its ``last_updated``)."""
        body: dict[str, Any] = self._ok(
            "POST", f"/api/states/{entity_id}", {"state": state, "attributes": attributes or {}}
        )
        return body

    def get_state(self, entity_id: str) -> dict[str, Any] | None:
        status, body = self._request("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET /api/states/{entity_id} -> HTTP {status}: {body}")
        return dict(body)

    def all_states(self) -> dict[str, dict[str, Any]]:
        """``GET /api/states``, by entity_id."""
        body: list[dict[str, Any]] = self._ok("GET", "/api/states")
        return {state["entity_id"]: state for state in body}

    def call_service(self, domain: str, service: str, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``POST /api/services/<domain>/<service>``; HA answers when the call is done, with the changed states."""
        body: list[dict[str, Any]] = self._ok("POST", f"/api/services/{domain}/{service}", data or {})
        return body

    def write_automations(self, automations: list[dict[str, Any]]) -> None:
        """Replace automations.yaml (JSON is YAML); call ``reload_automations()`` to apply it."""
        self.automations_path.write_text(json.dumps(automations, indent=2) + "\n")

    def reload_automations(self) -> None:
        self.call_service("automation", "reload")

    def config(self) -> dict[str, Any]:
        body: dict[str, Any] = self._ok("GET", "/api/config")
        return body

    def execute_script(self, sequence: list[dict[str, Any]], timeout_s: float = 120.0) -> Any:
        """Run a script sequence inside HA (``execute_script`` over the WebSocket) and wait for its end: many
        state changes in a few seconds, far faster than one REST call each."""
        return _run_in_thread(self._execute_script(sequence, timeout_s))

    async def _execute_script(self, sequence: list[dict[str, Any]], timeout_s: float) -> Any:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.websocket_url) as ws:
            async with asyncio.timeout(timeout_s):
                assert (await ws.receive_json())["type"] == "auth_required"
                await ws.send_json({"type": "auth", "access_token": self.token})
                assert (await ws.receive_json())["type"] == "auth_ok"
                await ws.send_json({"id": 1, "type": "execute_script", "sequence": sequence})
                result = await ws.receive_json()
        if not result.get("success"):
            raise RuntimeError(f"execute_script failed: {result}")
        return result.get("result")

    def call_services(self, calls: list[tuple[str, str, dict[str, Any]]], timeout_s: float = 120.0) -> None:
        """Many service calls over one WebSocket, sent without waiting for each answer (HA runs them as they
        come): thousands of state changes in seconds. Raises when any call failed."""
        _run_in_thread(self._call_services(calls, timeout_s))

    async def _call_services(self, calls: list[tuple[str, str, dict[str, Any]]], timeout_s: float) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.websocket_url) as ws:
            async with asyncio.timeout(timeout_s):
                assert (await ws.receive_json())["type"] == "auth_required"
                await ws.send_json({"type": "auth", "access_token": self.token})
                assert (await ws.receive_json())["type"] == "auth_ok"
                for msg_id, (domain, service, data) in enumerate(calls, start=1):
                    command = {"id": msg_id, "type": "call_service", "domain": domain, "service": service}
                    await ws.send_json({**command, "service_data": data})
                pending = set(range(1, len(calls) + 1))
                while pending:
                    message = await ws.receive_json()
                    if message.get("type") == "result":
                        if not message.get("success"):
                            raise RuntimeError(f"call_service failed: {message}")
                        pending.discard(message["id"])

    def history(self, entity_id: str, since_iso: str) -> list[dict[str, Any]]:
        """Every recorded state of one entity since ``since_iso``, through REST ``/api/history/period`` (not the
        WebSocket command the daemon uses): an independent reading of the recorder."""
        query = urllib.parse.urlencode(
            {
                "filter_entity_id": entity_id,
                "significant_changes_only": "0",
                "no_attributes": "1",
                "skip_initial_state": "1",
            }
        )
        body = self._ok("GET", f"/api/history/period/{urllib.parse.quote(since_iso)}?{query}")
        return [state for series in body for state in series]
