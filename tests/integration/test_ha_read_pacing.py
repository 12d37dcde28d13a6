"""Paced reads over a real loopback WebSocket (aiohttp client and server, the fake HA speaking HA's protocol):
every event arrives, in order; a command sent while reading is paused is answered at once, with everything
sent before it; the transport is not left paused when the reader ends."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant.connection import HAConnection
from tests.support.fake_ha import FakeHomeAssistant


async def _scenario() -> dict[str, Any]:
    ha = FakeHomeAssistant()
    await ha.start()
    received: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{ha.url}/api/websocket")
            await ws.receive()
            await ws.send_json({"type": "auth", "access_token": "good-token"})
            await ws.receive()
            conn = HAConnection(ws, Stats())
            reader = asyncio.create_task(conn.read_loop())
            await conn.call("supported_features", features={"coalesce_messages": 1})
            await conn.subscribe("state_changed", lambda e: received.append(e["data"]["new_state"]["state"]))
            # A long pause, so what follows does not depend on timing: after the first frame, reading waits.
            assert conn.pace_reads(30.0)  # the transport of this aiohttp is found
            for burst in range(5):
                for i in range(20):
                    ha.set_state("sensor.paced", str(burst * 20 + i))
                await ha.flush()
            while not received:
                await asyncio.sleep(0.01)
            # A command while reading is paused: sending it ends the pause, so it is answered, and everything
            # HA sent before the answer has arrived with it.
            states = await conn.call("get_states", timeout_s=5.0)
            assert received == [str(n) for n in range(100)]
            paused_after = conn._pacer is not None and conn._pacer.paused  # the answer's frame paused again
            pauses = conn._pacer.pauses if conn._pacer is not None else 0
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            resumed_at_end = conn._pacer is not None and not conn._pacer.paused
            await ws.close()
            return {"received": list(received), "states": states, "pauses": pauses, "paused_after": paused_after,
                    "resumed_at_end": resumed_at_end}
    finally:
        await ha.stop()


def test_paced_reads_lose_nothing_answer_commands_and_close_cleanly() -> None:
    result = asyncio.run(asyncio.wait_for(_scenario(), 30))
    assert result["received"] == [str(n) for n in range(100)]
    assert [s["entity_id"] for s in result["states"]] == ["sensor.paced"]
    assert result["pauses"] >= 2
    assert result["paused_after"]
    assert result["resumed_at_end"]  # the reader ended: nothing is left paused under the closing handshake
