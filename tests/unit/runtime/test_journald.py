"""journald's native protocol: the encoder against its own decoder (property tests), then real datagrams
captured on a socket bound where journald's would be, parsed back field by field."""

from __future__ import annotations

import array
import io
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from homeiq_daemon.runtime import journal
from homeiq_daemon.runtime.logs import configure_logging, get_logger

names = st.from_regex(r"[A-Z][A-Z0-9_]{0,63}", fullmatch=True)


@given(st.lists(st.tuples(names, st.binary(max_size=300))))
def test_encode_decode_round_trip(fields: list[tuple[str, bytes]]) -> None:
    assert journal.decode_entry(journal.encode_entry(fields)) == fields


@given(st.text(min_size=1, max_size=100))
def test_any_key_becomes_a_valid_field_name(key: str) -> None:
    name = journal.field_name(key)
    assert journal._NAME_OK.match(name)
    assert name.startswith("HOMEIQ_")


def test_newlines_use_the_length_prefixed_form() -> None:
    data = journal.encode_entry([("MESSAGE", "two\nlines"), ("PRIORITY", "3")])
    assert data == b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\nPRIORITY=3\n"


def test_invalid_names_and_malformed_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid journal field name"):
        journal.encode_entry([("_PID", "1")])  # trusted fields are journald's to set
    with pytest.raises(ValueError, match="invalid journal field name"):
        journal.encode_entry([("lower", "x")])
    malformed = [
        (b"MESSAGE=no newline", "does not end with a newline"),
        (b"MESSAGE\n\x05\x00", "without its length"),
        (b"MESSAGE\n" + (3).to_bytes(8, "little") + b"abcX", "not followed by a newline"),
    ]
    for bad, why in malformed:
        with pytest.raises(ValueError, match=why):
            journal.decode_entry(bad)


def test_values_are_capped() -> None:
    data = journal.encode_entry([("HOMEIQ_BIG", "x" * (journal.MAX_VALUE_BYTES + 10))])
    ((_, value),) = journal.decode_entry(data)
    assert len(value) == journal.MAX_VALUE_BYTES
    assert value.endswith(b"...")


# --- real datagrams --------------------------------------------------------------------------------------


class JournalSocket:
    """Stands where /run/systemd/journal/socket would: receives datagrams and passed memfds."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.settimeout(2.0)
        self.via_memfd = 0

    def receive(self) -> dict[str, bytes]:
        data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                assert data == b""  # the entry travels in the memfd only
                self.via_memfd += 1
                (fd,) = array.array("i", payload[:4])
                try:
                    data = os.pread(fd, os.fstat(fd).st_size, 0)
                finally:
                    os.close(fd)
        return dict(journal.decode_entry(data))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def journal_socket() -> Iterator[JournalSocket]:
    directory = tempfile.mkdtemp(prefix="hiq-j-", dir="/tmp")  # AF_UNIX paths are short
    listener = JournalSocket(Path(directory) / "socket")
    saved = structlog.get_config()
    try:
        yield listener
    finally:
        structlog.configure(**saved)
        listener.close()
        shutil.rmtree(directory)


def test_events_arrive_as_structured_entries(journal_socket: JournalSocket) -> None:
    fmt = configure_logging("journal", journal_socket=journal_socket.path)
    assert fmt == "journal-native"
    log = get_logger("test")
    log.info("influx.flush", points=1000, entity_id="sensor.kitchen_temperature", tags={"area": "kitchen"})
    entry = journal_socket.receive()
    assert entry["MESSAGE"] == (
        b"event=influx.flush points=1000 entity_id=sensor.kitchen_temperature "
        b"tags=\"{'area': 'kitchen'}\""
    )
    assert entry["PRIORITY"] == b"6"
    assert entry["SYSLOG_IDENTIFIER"] == b"homeiq"
    assert entry["HOMEIQ_EVENT"] == b"influx.flush"
    assert entry["HOMEIQ_POINTS"] == b"1000"
    assert entry["HOMEIQ_ENTITY_ID"] == b"sensor.kitchen_temperature"
    assert entry["HOMEIQ_TAGS"] == b'{"area":"kitchen"}'
    assert entry["HOMEIQ_COMPONENT"] == b"test"  # get_logger's name: a field, not repeated in the message
    assert "HOMEIQ_LEVEL" not in entry


def test_errors_carry_priority_traceback_and_no_secrets(journal_socket: JournalSocket) -> None:
    configure_logging("journal", journal_socket=journal_socket.path)
    log = get_logger("test")
    try:
        raise ConnectionError("influxd went away")
    except ConnectionError:
        log.exception("sink.down", token=SecretStr("s3cret"), password="hunter2")
    entry = journal_socket.receive()
    assert entry["PRIORITY"] == b"3"
    message = entry["MESSAGE"].decode()
    first, _, traceback = message.partition("\n")
    assert first == "event=sink.down token=********** password=**********"
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("ConnectionError: influxd went away")
    assert entry["HOMEIQ_TOKEN"] == b"**********"
    assert b"s3cret" not in b"".join(entry.values())
    assert b"hunter2" not in b"".join(entry.values())


def test_an_entry_too_big_for_a_datagram_goes_through_a_sealed_memfd(journal_socket: JournalSocket) -> None:
    # A small send buffer stands for a host whose net.core.wmem_max is lower than the entry.
    sender = journal.JournalSender(journal_socket.path, sndbuf_bytes=64 * 1024)
    logger = journal.JournalLogger(sender, fallback=io.StringIO())
    big = {f"part{i}": str(i) * 50_000 for i in range(4)}  # ~200 KB
    logger.warning(journal.render_entry(None, "warning", {"event": "registry.snapshot", "level": "warning", **big}))
    entry = journal_socket.receive()
    assert journal_socket.via_memfd == 1
    assert entry["HOMEIQ_EVENT"] == b"registry.snapshot"
    assert entry["HOMEIQ_PART3"] == b"3" * 50_000
    assert entry["PRIORITY"] == b"4"
    assert sender.sent == 1
    sender.close()


def test_falls_back_to_stderr_lines_when_journald_stops_listening(journal_socket: JournalSocket) -> None:
    stream = io.StringIO()
    configure_logging("journal", stream=stream, journal_socket=journal_socket.path)
    journal_socket.close()  # journald restarting: the path is there, nobody reads
    os.unlink(journal_socket.path)
    get_logger("test").warning("ha.disconnected", reason="ping timeout")
    assert stream.getvalue() == '<4>event=ha.disconnected reason="ping timeout"\n'


def test_without_the_socket_the_journal_format_writes_lines(tmp_path: Path) -> None:
    saved = structlog.get_config()
    stream = io.StringIO()
    try:
        fmt = configure_logging("journal", stream=stream, journal_socket=str(tmp_path / "none"))
        get_logger("test").info("homeiq.ready", sink="embedded")
    finally:
        structlog.configure(**saved)
    assert fmt == "journal"
    assert stream.getvalue() == "<6>event=homeiq.ready sink=embedded\n"
