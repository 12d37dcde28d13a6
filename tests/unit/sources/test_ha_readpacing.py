"""The read pacer's decisions, on a recording transport and the real event loop."""

from __future__ import annotations

import asyncio

from homeiq_daemon.sources.homeassistant.readpacing import ReadPacer, pausable_transport


class Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_pauses_after_a_frame_and_resumes_after_the_interval() -> None:
    async def scenario() -> list[str]:
        transport = Transport()
        pacer = ReadPacer(transport, 0.05)
        pacer.after_frame(waiting=False)
        pacer.after_frame(waiting=False)  # already paused: one pause for the burst
        assert pacer.paused
        assert transport.calls == ["pause"]
        while pacer.paused:
            await asyncio.sleep(0.01)
        pacer.after_frame(waiting=False)
        pacer.close()
        assert pacer.pauses == 2
        return transport.calls

    assert asyncio.run(scenario()) == ["pause", "resume", "pause", "resume"]


def test_no_pause_while_an_answer_is_awaited_and_a_new_command_ends_a_pause() -> None:
    async def scenario() -> list[str]:
        transport = Transport()
        pacer = ReadPacer(transport, 60.0)
        pacer.after_frame(waiting=True)
        assert not pacer.paused
        pacer.after_frame(waiting=False)
        pacer.wake()  # a command was sent: its answer is read at once, not in a minute
        assert not pacer.paused
        pacer.wake()  # nothing to end
        return transport.calls

    assert asyncio.run(scenario()) == ["pause", "resume"]


def test_close_ends_a_pause_so_the_closing_handshake_is_read() -> None:
    async def scenario() -> list[str]:
        transport = Transport()
        pacer = ReadPacer(transport, 60.0)
        pacer.after_frame(waiting=False)
        pacer.close()
        assert not pacer.paused
        return transport.calls

    assert asyncio.run(scenario()) == ["pause", "resume"]


def test_an_object_without_a_pausable_transport_is_read_frame_by_frame() -> None:
    assert pausable_transport(object()) is None

    class Connection:
        transport = object()

    class Ws:
        _conn = Connection()

    assert pausable_transport(Ws()) is None
