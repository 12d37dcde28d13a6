"""The spool format carries a version: a record of a newer format is told apart from damage and kept."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from homeiq_daemon.delivery.spool import Spool, encode_record

MiB = 1024 * 1024


def framed(body: bytes, points: int, flags: int, stamp: int = 1_700_000_000_000) -> bytes:
    """A record framed by hand from the documented layout (not by the code under test), valid checksum."""
    crc = zlib.crc32(body, zlib.crc32(struct.pack(">IBQ", points, flags, stamp)))
    return struct.pack(">4sIIBQI", b"HQSP", len(body), points, flags, stamp, crc) + body


def open_spool(path: Path) -> Spool:
    return Spool(path, max_bytes=64 * MiB, segment_bytes=8 * MiB, fsync=False)


@pytest.mark.parametrize(("flags", "named"), [(0x02, "unknown flags 0x02"), (0x10, "format version 1"),
                                              (0x11, "format version 1"), (0xF0, "format version 15")])
def test_a_newer_record_is_neither_read_nor_deleted_as_damage(tmp_path: Path, flags: int, named: str) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    today = encode_record(b"m v=1 1\n", 1, compress=True)
    segment = today + framed(b"\x00future payload", 3, flags) + encode_record(b"m v=2 2\n", 1, compress=False)
    (spool_dir / "0000000001.seg").write_bytes(segment)
    spool = open_spool(spool_dir)
    try:
        assert spool.set_aside is not None
        assert named in spool.set_aside_reason
        assert "0000000001.seg" in spool.set_aside_reason
        # Kept byte for byte where the log says, not counted as damage, and the live spool starts empty.
        assert (spool.set_aside / "0000000001.seg").read_bytes() == segment
        assert spool.damaged_regions == 0
        assert spool.peek() is None
        spool.append(b"m v=3 3\n", 1)
        record = spool.peek()
        assert record is not None
        assert record.body() == b"m v=3 3\n"
    finally:
        spool.close()
    reopened = open_spool(spool_dir)  # the fresh spool is today's format: read as usual
    try:
        assert reopened.set_aside is None
        assert reopened.stats().records == 1
    finally:
        reopened.close()


def test_todays_records_are_read_as_before(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "0000000001.seg").write_bytes(framed(b"m v=1 1\n", 1, 0x00) + encode_record(b"m v=2 2\n", 1,
                                                                                             compress=True))
    spool = open_spool(spool_dir)
    try:
        assert spool.set_aside is None
        first = spool.peek()
        assert first is not None
        assert first.body() == b"m v=1 1\n"
        spool.ack(first)
        second = spool.peek()
        assert second is not None
        assert second.body() == b"m v=2 2\n"
    finally:
        spool.close()
