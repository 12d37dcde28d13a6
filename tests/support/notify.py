"""A real sd_notify receiver for tests: an AF_UNIX datagram socket, as systemd's manager binds it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    at: float  # time.monotonic() when received
    fields: dict[str, str]

    def __contains__(self, key: str) -> bool:
        return key in self.fields


def parse(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in datagram.decode().split("\n"):
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        fields[key] = value
    return fields


class NotifyListener:
    """Binds ``@homeiq-test-<pid>-<n>`` (abstract) or a path; collects what arrives."""

    _count = 0

    def __init__(self, path: str | None = None) -> None:
        NotifyListener._count += 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"homeiq-test-{os.getpid()}-{NotifyListener._count}-{time.monotonic_ns()}"
            self.env_value = "@" + name
            self.sock.bind("\0" + name)
        else:
            self.env_value = path
            self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[Message] = []

    def poll(self) -> list[Message]:
        """Read whatever has arrived (never blocks)."""
        new: list[Message] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            new.append(Message(time.monotonic(), parse(data)))
        self.messages.extend(new)
        return new

    def wait_until(self, predicate: Callable[[list[Message]], bool], timeout_s: float) -> None:
        """Blocking wait, for tests that drive a subprocess."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self.messages):
                return
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout_s} s; got {[m.fields for m in self.messages]}")

    def with_key(self, key: str) -> list[Message]:
        return [m for m in self.messages if key in m]

    def close(self) -> None:
        self.sock.close()
