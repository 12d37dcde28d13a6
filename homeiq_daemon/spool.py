"""Durable on-disk spool for batches InfluxDB could not take. Synchronous file IO, one owner.

Format: append-only segment files ``spool/<seq>.seg``; each record is

    magic b"HQSP" | payload length u32 | points u32 | flags u8 | spooled_at_ms u64 | crc32 u32 | payload

(big-endian; crc32 covers points, flags, spooled_at_ms and the payload). The payload is one batch body in
line protocol, gzip-compressed when ``flags & 1``. Why segments and not SQLite: an append is one
``write`` + ``fsync`` of a buffer, the replay reads sequentially and can send the stored gzip bytes as
they are, and dropping the oldest data when the spool is full is one ``unlink``. A torn tail or a flipped
bit fails the length/crc check; the reader counts the damaged bytes and resynchronises on the next magic,
so good records after the damage are kept.

The read position survives restarts in ``spool/cursor`` (``<seq> <offset>``), written after each record
InfluxDB accepted. It is not fsynced: after a crash a few records may be sent again, which InfluxDB
absorbs (same series and timestamp overwrite the same point).

The caller serialises all calls (the delivery loop runs them in one worker thread).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"HQSP"
_HEADER = struct.Struct(">4sIIBQI")
HEADER_SIZE = _HEADER.size
_CRC_PART = struct.Struct(">IBQ")
FLAG_GZIP = 1
MAX_RECORD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    segment: int
    offset: int
    next_offset: int
    points: int
    flags: int
    spooled_at_ms: int
    payload: bytes

    @property
    def gzipped(self) -> bool:
        return bool(self.flags & FLAG_GZIP)

    def body(self) -> bytes:
        """The batch as plain line protocol."""
        return gzip.decompress(self.payload) if self.gzipped else self.payload


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int
    records: int
    points: int
    oldest_ms: int | None


@dataclass(frozen=True, slots=True)
class SpoolStats:
    bytes: int
    records: int
    points: int
    segments: int
    oldest_spooled_ms: int | None


@dataclass(frozen=True, slots=True)
class Damage:
    segment: int
    offset: int
    skipped_bytes: int
    reason: str


def encode_record(body: bytes, points: int, *, compress: bool, spooled_at_ms: int | None = None) -> bytes:
    flags = 0
    payload = body
    if compress:
        payload = gzip.compress(body, compresslevel=1, mtime=0)
        flags |= FLAG_GZIP
    stamp = int(time.time() * 1000) if spooled_at_ms is None else spooled_at_ms
    crc = zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(points, flags, stamp)))
    return _HEADER.pack(MAGIC, len(payload), points, flags, stamp, crc) + payload


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int, fsync: bool = True, compress: bool = True
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.compress = compress
        self.damage: list[Damage] = []
        self.dropped_records = 0
        self.dropped_points = 0
        self.damaged_bytes = 0
        self._segments: list[_Segment] = []
        self._write_fh: int | None = None
        self._cursor_seq = 0
        self._cursor_offset = 0
        self._consumed_points = 0  # points before the cursor in the first segment
        self._consumed_records = 0
        self._open()

    # --- state ------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        seqs = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
        for seq in seqs:
            path = self._path(seq)
            self._segments.append(self._scan_segment(seq, path))
        self._load_cursor()

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:010d}.seg"

    def _scan_segment(self, seq: int, path: Path) -> _Segment:
        """Count records and points of a segment (headers and checksums), noting any damage."""
        seg = _Segment(seq, path, path.stat().st_size, 0, 0, None)
        for record in self._iter_records(seq, path, 0):
            seg.records += 1
            seg.points += record.points
            if seg.oldest_ms is None:
                seg.oldest_ms = record.spooled_at_ms
        return seg

    def _load_cursor(self) -> None:
        cursor_path = self.directory / "cursor"
        try:
            seq_text, offset_text = cursor_path.read_text().split()
            seq, offset = int(seq_text), int(offset_text)
        except (FileNotFoundError, ValueError):
            seq, offset = 0, 0
        if not self._segments:
            self._cursor_seq, self._cursor_offset = 0, 0
            return
        first = self._segments[0]
        if seq != first.seq:
            # The cursor points at a segment that is gone (finished and deleted): start at the oldest.
            seq, offset = first.seq, 0
        self._cursor_seq, self._cursor_offset = seq, max(0, min(offset, first.size))
        if self._cursor_offset:
            for record in self._iter_records(first.seq, first.path, 0, count_damage=False):
                if record.offset >= self._cursor_offset:
                    break
                self._consumed_points += record.points
                self._consumed_records += 1

    def stats(self) -> SpoolStats:
        size = sum(s.size for s in self._segments)
        records = sum(s.records for s in self._segments) - self._consumed_records
        points = sum(s.points for s in self._segments) - self._consumed_points
        oldest = next((s.oldest_ms for s in self._segments if s.oldest_ms is not None), None)
        return SpoolStats(size, records, points, len(self._segments), oldest)

    def is_empty(self) -> bool:
        return self.stats().records <= 0

    # --- writing ----------------------------------------------------------------------------------

    def append(self, body: bytes, points: int) -> int:
        """Append one batch; returns the number of points dropped to make room (oldest segments first)."""
        record = encode_record(body, points, compress=self.compress)
        dropped = self._make_room(len(record))
        seg = self._writable_segment(len(record))
        assert self._write_fh is not None
        view = memoryview(record)
        while view:
            written = os.write(self._write_fh, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._write_fh)
        seg.size += len(record)
        seg.records += 1
        seg.points += points
        if seg.oldest_ms is None:
            seg.oldest_ms = int(time.time() * 1000)
        return dropped

    def _writable_segment(self, record_size: int) -> _Segment:
        if self._segments and self._write_fh is not None:
            current = self._segments[-1]
            if current.size + record_size <= self.segment_bytes or current.size == 0:
                return current
        self._close_writer()
        seq = (self._segments[-1].seq + 1) if self._segments else 1
        path = self._path(seq)
        self._write_fh = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.fsync:
            self._fsync_dir()
        seg = _Segment(seq, path, 0, 0, 0, None)
        self._segments.append(seg)
        if len(self._segments) == 1:
            self._cursor_seq, self._cursor_offset = seq, 0
            self._consumed_points = self._consumed_records = 0
        return seg

    def _make_room(self, record_size: int) -> int:
        dropped = 0
        while self._segments and sum(s.size for s in self._segments) + record_size > self.max_bytes:
            oldest = self._segments[0]
            if oldest.seq == self._segments[-1].seq:
                # Only the active segment is left: start a new one so the old one can be dropped.
                self._close_writer()
            remaining_points = oldest.points - self._consumed_points
            self.dropped_points += remaining_points
            self.dropped_records += oldest.records - self._consumed_records
            dropped += remaining_points
            self._delete_first_segment()
        return dropped

    def _delete_first_segment(self) -> None:
        oldest = self._segments.pop(0)
        with contextlib.suppress(FileNotFoundError):
            oldest.path.unlink()
        self._consumed_points = self._consumed_records = 0
        if self._segments:
            self._cursor_seq, self._cursor_offset = self._segments[0].seq, 0
        else:
            self._cursor_seq, self._cursor_offset = 0, 0
            with contextlib.suppress(FileNotFoundError):
                (self.directory / "cursor").unlink()

    def _close_writer(self) -> None:
        if self._write_fh is not None:
            os.close(self._write_fh)
            self._write_fh = None

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- reading ----------------------------------------------------------------------------------

    def _iter_records(self, seq: int, path: Path, start: int, *, count_damage: bool = True) -> Iterator[SpoolRecord]:
        """Valid records from ``start`` on; damaged stretches are skipped (and noted when counting)."""
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            end = os.fstat(fh.fileno()).st_size
            pos = start
            while pos < end:
                fh.seek(pos)
                header = fh.read(HEADER_SIZE)
                reason = None
                if len(header) < HEADER_SIZE:
                    reason = "torn header at end of segment"
                else:
                    magic, length, points, flags, stamp, crc = _HEADER.unpack(header)
                    if magic != MAGIC:
                        reason = "bad magic"
                    elif length > MAX_RECORD_BYTES or pos + HEADER_SIZE + length > end:
                        reason = "length runs past the end of the segment (torn write?)"
                    else:
                        payload = fh.read(length)
                        expected = zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(points, flags, stamp)))
                        if expected != crc:
                            reason = "checksum mismatch"
                        else:
                            nxt = pos + HEADER_SIZE + length
                            yield SpoolRecord(seq, pos, nxt, points, flags, stamp, payload)
                            pos = nxt
                            continue
                # Damage (rare): resynchronise on the next magic after this position, or give up the rest.
                fh.seek(pos + 1)
                rest = fh.read()
                found = rest.find(MAGIC)
                resume = end if found < 0 else pos + 1 + found
                if count_damage:
                    self.damaged_bytes += resume - pos
                    self.damage.append(Damage(seq, pos, resume - pos, reason))
                pos = resume

    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet acknowledged, or None when the spool is drained."""
        while self._segments:
            first = self._segments[0]
            for record in self._iter_records(first.seq, first.path, self._cursor_offset, count_damage=False):
                return record
            # Nothing readable left in this segment.
            if len(self._segments) == 1:
                if self._write_fh is not None:
                    return None  # the writer is still appending to it
                self._delete_first_segment()
                return None
            self._delete_first_segment()
        return None

    def ack(self, record: SpoolRecord) -> None:
        """Mark a record delivered; deletes its segment once everything in it is delivered."""
        if not self._segments or record.segment != self._segments[0].seq:
            return
        self._cursor_offset = record.next_offset
        self._consumed_points += record.points
        self._consumed_records += 1
        first = self._segments[0]
        if self._cursor_offset >= first.size and (len(self._segments) > 1 or self._write_fh is None):
            self._delete_first_segment()
        elif self._consumed_records >= first.records and len(self._segments) == 1:
            # Drained completely: drop the file so the spool takes no space and the next outage starts fresh.
            self._close_writer()
            self._delete_first_segment()
        else:
            (self.directory / "cursor").write_text(f"{self._cursor_seq} {self._cursor_offset}\n")

    def close(self) -> None:
        self._close_writer()
