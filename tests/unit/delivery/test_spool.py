"""Spool framing and bookkeeping: round trips, restarts, segment deletion, damage, the full-spool policy."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeiq_daemon.delivery.spool import HEADER_SIZE, MAGIC, Damage, Spool, encode_record, iter_records
from tests.support.hypo import examples

MiB = 1024 * 1024


def open_spool(path: Path, **kwargs: object) -> Spool:
    options: dict[str, object] = {"max_bytes": 64 * MiB, "segment_bytes": 8 * MiB, "fsync": False}
    options.update(kwargs)
    return Spool(path, **options)  # type: ignore[arg-type]


def drain(spool: Spool, limit: int | None = None) -> list[tuple[bytes, int]]:
    out = []
    while limit is None or len(out) < limit:
        record = spool.peek()
        if record is None:
            break
        out.append((record.body(), record.points))
        spool.ack(record)
    return out


def batch(i: int, size: int = 200) -> bytes:
    return b"".join(b"sensor.t%d,domain=sensor value=%d %d\n" % (i, j, 1_700_000_000_000_000_000 + i * 1000 + j)
                    for j in range(size // 40 + 1))


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


@pytest.fixture
def spool_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spool-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- round trips ------------------------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(st.tuples(st.binary(max_size=3000), st.integers(0, 2**32 - 1)), max_size=40),
    compress=st.booleans(),
    segment_kib=st.sampled_from([64, 128, 8192]),
)
def test_round_trip_any_payloads(items: list[tuple[bytes, int]], compress: bool, segment_kib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = open_spool(Path(tmp), compress=compress, segment_bytes=segment_kib * 1024)
        for body, points in items:
            assert spool.append(body, points) == 0
        assert spool.stats().records == len(items)
        assert spool.stats().points == sum(p for _, p in items)
        assert drain(spool) == items
        assert spool.stats().records == 0
        assert spool.stats().points == 0
        assert segments(Path(tmp)) == []  # a drained spool takes no space
        spool.close()


def test_records_survive_reopen_and_resume_after_cursor(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    bodies = [batch(i) for i in range(10)]
    for i, body in enumerate(bodies):
        spool.append(body, i + 1)
    assert [b for b, _ in drain(spool, limit=4)] == bodies[:4]
    spool.close()

    again = open_spool(spool_dir)
    assert again.stats().records == 6
    assert again.stats().points == sum(range(5, 11))
    assert [b for b, _ in drain(again)] == bodies[4:]
    again.close()


def test_cursor_across_segment_deletion_and_restarts(spool_dir: Path) -> None:
    """Small segments: acknowledge across boundaries, reopening after every step; exactly-once here."""
    bodies = [os.urandom(20_000) for _ in range(30)]  # incompressible: about 3 records per 64 KiB segment
    spool = open_spool(spool_dir, segment_bytes=64 * 1024)
    for body in bodies:
        spool.append(body, 1)
    assert len(segments(spool_dir)) >= 9
    got: list[bytes] = []
    while True:
        spool.close()
        spool = open_spool(spool_dir, segment_bytes=64 * 1024)
        record = spool.peek()
        if record is None:
            break
        got.append(record.body())
        spool.ack(record)
        # Appends after a restart go to a new segment, after everything older.
        if len(got) == 10:
            spool.append(b"late", 1)
            bodies.append(b"late")
    assert got == bodies
    assert spool.stats().records == 0
    spool.close()


def test_cursor_not_on_a_boundary_resends_instead_of_skipping(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    for i in range(5):
        spool.append(batch(i), 1)
    record = spool.peek()
    assert record is not None
    spool.ack(record)
    second = spool.peek()
    assert second is not None
    spool.close()
    # A torn or stale cursor that points into the middle of the second record.
    seq = int(segments(spool_dir)[0].stem)
    (spool_dir / "cursor").write_text(f"{seq} {second.offset + 7}\n")
    again = open_spool(spool_dir)
    assert [b for b, _ in drain(again)] == [batch(i) for i in range(1, 5)]
    again.close()


def test_garbage_cursor_starts_from_the_oldest_record(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    for i in range(3):
        spool.append(batch(i), 1)
    spool.close()
    (spool_dir / "cursor").write_bytes(b"\x00\x00garbage")
    again = open_spool(spool_dir)
    assert [b for b, _ in drain(again)] == [batch(i) for i in range(3)]
    again.close()


def test_segment_numbers_are_never_reused(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    spool.append(b"a", 1)
    first_seq = int(segments(spool_dir)[0].stem)
    drain(spool)
    spool.close()
    assert segments(spool_dir) == []
    again = open_spool(spool_dir)
    again.append(b"b", 1)
    assert int(segments(spool_dir)[0].stem) > first_seq
    again.close()


def test_peek_sees_records_appended_to_the_open_segment(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    assert spool.peek() is None
    spool.append(b"one", 1)
    first = spool.peek()
    assert first is not None
    assert first.body() == b"one"
    spool.append(b"two", 2)  # same open segment, after the reader's position
    assert spool.peek() == first  # not acknowledged: the same record again
    spool.ack(first)
    spool.ack(first)  # twice is harmless
    second = spool.peek()
    assert second is not None
    assert second.body() == b"two"
    spool.ack(second)
    assert spool.peek() is None
    assert spool.stats().records == 0
    spool.append(b"three", 3)
    assert drain(spool) == [(b"three", 3)]
    spool.close()


def test_peek_many_takes_consecutive_records_within_limits(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    for i in range(10):
        spool.append(batch(i), 100)
    assert [r.points for r in spool.peek_many(350, 10 * MiB)] == [100, 100, 100]
    assert len(spool.peek_many(50, 10 * MiB)) == 1  # always at least one
    first_two = spool.peek_many(200, 10 * MiB)
    spool.ack_many(first_two)
    spool.ack_many(first_two)  # again: nothing happens
    assert spool.stats().records == 8
    spool.close()
    again = open_spool(spool_dir)
    rest = again.peek_many(10_000, 10 * MiB)
    assert [r.body() for r in rest] == [batch(i) for i in range(2, 10)]
    again.ack_many(rest)
    assert again.peek_many(10_000, 10 * MiB) == []
    assert segments(spool_dir) == []
    again.close()


def test_peek_many_stops_at_the_end_of_a_segment(spool_dir: Path) -> None:
    spool = open_spool(spool_dir, segment_bytes=64 * 1024)
    bodies = [os.urandom(20_000) for _ in range(7)]
    for body in bodies:
        spool.append(body, 1)
    got: list[bytes] = []
    while records := spool.peek_many(1000, 100 * MiB):
        assert len({r.segment for r in records}) == 1
        got.extend(r.body() for r in records)
        spool.ack_many(records)
    assert got == bodies
    spool.close()


def test_stats_track_depth_and_oldest(spool_dir: Path) -> None:
    spool = open_spool(spool_dir)
    assert spool.stats().oldest_spooled_ms is None
    spool.append(b"x" * 100, 10)
    spool.append(b"y" * 100, 20)
    st_ = spool.stats()
    assert (st_.records, st_.points, st_.segments) == (2, 30, 1)
    assert st_.bytes == sum(p.stat().st_size for p in segments(spool_dir))
    assert st_.oldest_spooled_ms is not None
    drain(spool, limit=1)
    assert (spool.stats().records, spool.stats().points) == (1, 20)
    spool.close()


# --- full spool -------------------------------------------------------------------------------------------


def test_full_spool_drops_oldest_segment_and_counts_it(spool_dir: Path) -> None:
    spool = open_spool(spool_dir, max_bytes=1 * MiB, segment_bytes=8 * MiB)
    assert spool.segment_bytes == 128 * 1024  # a drop costs an eighth of the bound, not everything
    bodies = [os.urandom(30_000) for _ in range(100)]  # 3 MB of incompressible data into a 1 MiB spool
    dropped = 0
    for body in bodies:
        dropped += spool.append(body, 1)
        assert spool.stats().bytes <= 1 * MiB
    assert dropped == spool.dropped_points > 0
    kept = [b for b, _ in drain(spool)]
    assert len(kept) + dropped == len(bodies)
    assert kept == bodies[-len(kept):]  # what survives is the newest data, in order, with no gaps
    spool.close()


def test_full_spool_when_the_only_segment_is_the_one_being_written(spool_dir: Path) -> None:
    spool = open_spool(spool_dir, max_bytes=1 * MiB)
    big = [os.urandom(700_000) for _ in range(3)]  # each record is larger than a segment
    assert spool.append(big[0], 5) == 0
    assert spool.append(big[1], 6) == 5
    assert spool.append(big[2], 7) == 6
    assert spool.stats().points == 7
    assert drain(spool) == [(big[2], 7)]
    spool.close()


def test_full_spool_counts_only_undelivered_points(spool_dir: Path) -> None:
    spool = open_spool(spool_dir, max_bytes=1 * MiB)
    spool.append(os.urandom(50_000), 3)
    spool.append(os.urandom(50_000), 4)  # same 128 KiB segment
    assert spool.stats().segments == 1
    assert drain(spool, limit=1)[0][1] == 3
    assert spool.append(os.urandom(1_000_000), 5) == 4  # the delivered record is not counted as dropped
    assert [points for _, points in drain(spool)] == [5]
    spool.close()


# --- damage -----------------------------------------------------------------------------------------------


def write_records(spool_dir: Path, count: int) -> tuple[list[bytes], list[int]]:
    spool = open_spool(spool_dir)
    bodies = [batch(i, 2000) for i in range(count)]
    for body in bodies:
        spool.append(body, 1)
    spool.close()
    path = segments(spool_dir)[0]
    data = path.read_bytes()
    offsets = []
    pos = 0
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER_SIZE + int.from_bytes(data[pos + 4: pos + 8], "big")
    return bodies, offsets


def test_truncated_tail_keeps_everything_before_it(spool_dir: Path) -> None:
    bodies, offsets = write_records(spool_dir, 6)
    path = segments(spool_dir)[0]
    os.truncate(path, offsets[5] + 30)  # power cut in the middle of the last record
    spool = open_spool(spool_dir)
    assert spool.damaged_regions == 1
    assert spool.damaged_bytes == 30
    assert [b for b, _ in drain(spool)] == bodies[:5]
    spool.close()


def test_zeroed_length_keeps_records_before_and_after(spool_dir: Path) -> None:
    bodies, offsets = write_records(spool_dir, 6)
    path = segments(spool_dir)[0]
    with path.open("r+b") as fh:
        fh.seek(offsets[2] + 4)
        fh.write(b"\x00\x00\x00\x00")
    spool = open_spool(spool_dir)
    assert spool.damaged_regions == 1
    assert spool.damage[0].offset == offsets[2]
    assert spool.damage[0].skipped_bytes == offsets[3] - offsets[2]
    assert [b for b, _ in drain(spool)] == bodies[:2] + bodies[3:]
    spool.close()


def test_flipped_checksum_bit_skips_only_that_record(spool_dir: Path) -> None:
    bodies, offsets = write_records(spool_dir, 6)
    path = segments(spool_dir)[0]
    with path.open("r+b") as fh:
        fh.seek(offsets[4] + HEADER_SIZE - 1)  # last byte of the crc32
        byte = fh.read(1)
        fh.seek(offsets[4] + HEADER_SIZE - 1)
        fh.write(bytes([byte[0] ^ 0x10]))
    spool = open_spool(spool_dir)
    assert spool.damaged_regions == 1
    assert "checksum" in spool.damage[0].reason
    assert spool.stats().records == 5
    assert [b for b, _ in drain(spool)] == bodies[:4] + bodies[5:]
    spool.close()


def test_segment_with_nothing_readable_is_removed(spool_dir: Path) -> None:
    write_records(spool_dir, 3)
    path = segments(spool_dir)[0]
    path.write_bytes(b"\xff" * 5000)
    spool = open_spool(spool_dir)
    assert spool.damaged_bytes == 5000
    assert spool.stats().records == 0
    assert segments(spool_dir) == []
    spool.close()


@settings(max_examples=examples(150), deadline=None)
@given(
    count=st.integers(1, 8),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=6),
    garbage=st.binary(max_size=64),
    compress=st.booleans(),
)
def test_damage_never_crashes_and_never_invents_records(
    count: int, cut: int | None, flips: list[tuple[int, int]], garbage: bytes, compress: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        written = [(f"m{i} value={i} {i}\n".encode() * (i + 1), i) for i in range(count)]
        spool = open_spool(directory, compress=compress)
        for body, points in written:
            spool.append(body, points)
        spool.close()
        path = segments(directory)[0]
        data = bytearray(path.read_bytes())
        for position, bit in flips:
            if data:
                data[position % len(data)] ^= 1 << bit
        if cut is not None and data:
            del data[cut % len(data):]
        path.write_bytes(bytes(data) + garbage)

        reopened = open_spool(directory, compress=compress)
        got = drain(reopened)
        reopened.close()
        # Every record read back was written, in the order written (a subsequence of what was written).
        remaining = iter(written)
        for item in got:
            assert any(item == candidate for candidate in remaining), item
        if not flips and cut is None:
            assert got == written


def test_magic_inside_a_payload_is_not_mistaken_for_a_record(spool_dir: Path) -> None:
    """The reader follows lengths, and looks for the magic only after damage: an intact record whose payload
    holds the magic, or even a whole encoded record, is read back as the one record it is."""
    inner = encode_record(b"inner", 1, compress=False, spooled_at_ms=1)
    spool = open_spool(spool_dir, compress=False)
    spool.append(b"plain" + MAGIC + b"not a header", 1)
    spool.append(inner, 2)
    spool.close()
    reopened = open_spool(spool_dir, compress=False)
    assert reopened.damaged_regions == 0
    assert [b for b, _ in drain(reopened)] == [b"plain" + MAGIC + b"not a header", inner]
    reopened.close()


# --- disk full (fault injection: os.write refuses past a quota, like a full filesystem) -------------------


class _QuotaDisk:
    """Writes succeed until the spool directory would exceed ``quota`` bytes; then a partial write and
    ENOSPC, as a filesystem running out of blocks mid-record does."""

    def __init__(self, directory: Path, quota: int) -> None:
        self.directory = directory
        self.quota = quota
        self.refused = 0
        self._real_write = os.write

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.seg"))

    def write(self, fd: int, data: bytes | memoryview) -> int:
        room = self.quota - self.used()
        if len(data) > room:
            self.refused += 1
            if room > 0:
                self._real_write(fd, bytes(data[:room]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real_write(fd, data)


def test_disk_full_drops_oldest_like_a_full_spool_and_leaves_no_torn_record(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _QuotaDisk(spool_dir, quota=300_000)
    monkeypatch.setattr("homeiq_daemon.delivery.spool.os.write", disk.write)
    spool = open_spool(spool_dir, max_bytes=64 * MiB, segment_bytes=64 * 1024)
    bodies = [os.urandom(40_000) for _ in range(20)]
    dropped = sum(spool.append(body, 1) for body in bodies)
    assert disk.refused > 0
    assert dropped == spool.dropped_points > 0
    assert disk.used() <= 300_000
    spool.close()
    monkeypatch.undo()
    reopened = open_spool(spool_dir, segment_bytes=64 * 1024)
    assert reopened.damaged_regions == 0  # the partial writes were cut back
    kept = [b for b, _ in drain(reopened)]
    assert len(kept) + dropped == len(bodies)
    assert kept == bodies[-len(kept):]
    reopened.close()


def test_disk_full_with_nothing_to_free_raises(spool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _QuotaDisk(spool_dir, quota=1000)
    monkeypatch.setattr("homeiq_daemon.delivery.spool.os.write", disk.write)
    spool = open_spool(spool_dir)
    with pytest.raises(OSError, match="No space"):
        spool.append(os.urandom(5000), 1)
    assert spool.stats().records == 0
    assert segments(spool_dir) == []  # the empty segment it had started is gone
    monkeypatch.undo()
    spool.append(b"later", 1)  # the disk has room again
    assert drain(spool) == [(b"later", 1)]
    spool.close()


@pytest.mark.parametrize("garbage", [0, 1, 1024 * 1024 - 5, 1024 * 1024 - 2, 1024 * 1024, 1024 * 1024 + 3])
def test_resync_finds_a_record_after_long_damage(garbage: int) -> None:
    """The search for the next magic reads in 1 MiB chunks; a magic straddling two chunks is still found."""
    record = encode_record(b"after the damage", 3, compress=False, spooled_at_ms=5)
    data = b"\x00" * garbage + record
    damage: list[Damage] = []
    found = list(iter_records(io.BytesIO(data), 1, 0, len(data), damage))
    assert [(r.body(), r.points, r.offset) for r in found] == [(b"after the damage", 3, garbage)]
    assert [d.skipped_bytes for d in damage] == ([garbage] if garbage else [])
