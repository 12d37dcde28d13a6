"""``user:password@`` in home_assistant.url and influxdb.url never reaches the output of a running daemon:
not its log lines, not the exit-77 line when Home Assistant rejects the token, not the systemd ``STATUS=``
line. The daemon runs as a process (as under systemd) against the protocol-exact fake HA on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from homeiq_daemon.errors import EXIT_NOPERM
from tests.support.fake_ha import FakeHomeAssistant
from tests.support.notify import NotifyListener

HOMEIQ = Path(sys.executable).with_name("homeiq")
SECRETS = ("ha-url-pass-31337", "influx-url-pass-4242")


async def test_rejected_token_exit_line_logs_and_status_hide_url_credentials(tmp_path: Path) -> None:
    ha = FakeHomeAssistant(token="the-right-token")
    await ha.start()
    listener = NotifyListener()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "WATCHDOG_"))}
        env.update(
            NOTIFY_SOCKET=listener.env_value,
            HOMEIQ_STATE_DIR=str(tmp_path / "state"),
            HOMEIQ_LOG__FORMAT="json",
            HOMEIQ_LOG__LEVEL="debug",
            HOMEIQ_HTTP__ENABLED="false",
            HOMEIQ_HOME_ASSISTANT__URL=f"http://hauser:{SECRETS[0]}@127.0.0.1:{ha.port}",
            HOMEIQ_HOME_ASSISTANT__TOKEN="a-wrong-token",
            # InfluxDB at a closed loopback port: it is only described (homeiq.starting), never reached.
            HOMEIQ_INFLUXDB__URL=f"http://influser:{SECRETS[1]}@127.0.0.1:9",
            HOMEIQ_INFLUXDB__CREATE_DATABASE="false",
        )
        proc = await asyncio.create_subprocess_exec(
            str(HOMEIQ), "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        await asyncio.sleep(0)  # the listener is non-blocking; everything was sent before the exit
        listener.poll()
    finally:
        listener.close()
        await ha.stop()
    output = (stdout + stderr).decode()
    statuses = [m.fields["STATUS"] for m in listener.with_key("STATUS")]
    assert proc.returncode == EXIT_NOPERM, output[-2000:]
    assert ha.auth_attempts == 1
    last_line = output.strip().splitlines()[-1]
    assert last_line.startswith(
        f"homeiq: error: Home Assistant at ws://**********@127.0.0.1:{ha.port}/api/websocket rejected the access token"
    ), last_line
    assert any(s.startswith("error: Home Assistant at ws://**********@") for s in statuses), statuses
    assert "InfluxDB 1.x at http://**********@127.0.0.1:9" in output  # homeiq.starting describes the sink
    for secret in SECRETS:
        assert secret not in output
        assert all(secret not in status for status in statuses)
