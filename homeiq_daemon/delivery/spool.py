"""Durable on-disk spool for batches the sink could not take. Synchronous file IO, one owner.

Append-only segment files ``spool/<seq>.seg`` of records framed as spoolformat.py describes (length,
points, flags, time, crc32; gzip payloads). Why segments and not SQLite (docs/reliability.md has the
measurements): an append is one ``write`` + ``fsync`` of a buffer, the replay reads sequentially and sends
the stored gzip bytes as they are, and dropping the oldest data when the spool is full is one ``unlink``.
A torn tail or a flipped bit fails the length/crc check; the reader counts the damaged bytes and
resynchronises on the next magic, so good records after the damage are kept.

The read position survives restarts in ``spool/cursor`` (``<seq> <offset>``, fixed width, rewritten in
place after each request the sink accepted). It is not fsynced: after a crash a few records may be sent
again, which InfluxDB absorbs (same series and timestamp overwrite the same point). A cursor that does not
land on a record boundary is rounded down to the last boundary before it, so a stale or torn cursor can
only resend, never skip. Segment numbers are never reused (the cursor remembers the last one even when
the spool is empty), so an old cursor can never point into a new segment.

The caller serialises all calls (the delivery loop runs them in one worker thread); ``stats()`` may be
read from any thread (it returns an immutable snapshot).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from homeiq_daemon.delivery.spoolformat import (
    FLAG_GZIP,
    HEADER_SIZE,
    MAGIC,
    Damage,
    NewerSpoolFormat,
    SpoolRecord,
    encode_record,
    iter_records,
)
from homeiq_daemon.errors import ConfigError

__all__ = [
    "FLAG_GZIP",
    "HEADER_SIZE",
    "MAGIC",
    "Damage",
    "Spool",
    "SpoolRecord",
    "SpoolStats",
    "encode_record",
    "iter_records",
]

MIN_SEGMENT_BYTES = 64 * 1024
MAX_DAMAGE_NOTES = 100
_CURSOR_FORMAT = "{:020d} {:020d}\n"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
    records: int  # not yet delivered
    points: int  # not yet delivered
    segments: int
    oldest_spooled_ms: int | None  # when the oldest undelivered record was spooled


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int, fsync: bool = True, compress: bool = True
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Dropping the oldest segment is the full-spool policy: keep segments a fraction of the bound so a
        # drop loses an eighth of the backlog, not all of it.
        self.segment_bytes = max(MIN_SEGMENT_BYTES, min(segment_bytes, max_bytes // 8))
        self.fsync = fsync
        self.compress = compress
        self.damage: list[Damage] = []  # the first MAX_DAMAGE_NOTES found when opening, for the log
        self.damaged_regions = 0
        self.damaged_bytes = 0
        self.dropped_records = 0
        self.dropped_points = 0
        self._segments: list[_Segment] = []
        self._write_fd: int | None = None
        self._write_seq: int | None = None
        self._last_seq = 0
        # Read position inside the first segment, and what lies before it (delivered).
        self._read_offset = 0
        self._read_records = 0
        self._read_points = 0
        self._head_ms: int | None = None
        self._stats = SpoolStats(0, 0, 0, 0, None)
        self.set_aside: Path | None = None  # where a spool of a newer format was moved (see _open)
        self.set_aside_reason = ""
        self._open()

    # --- opening ----------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._open_segments()
        except NewerSpoolFormat as exc:
            # Written by a newer homeiq (a downgrade): neither readable nor damage. Keep every file, untouched,
            # beside a fresh spool, so nothing is deleted and the newer version can still send them.
            self._segments = []
            self.set_aside = self.directory.with_name(f"{self.directory.name}.format-{exc.version}-{time.time_ns()}")
            self.set_aside_reason = str(exc)
            self.directory.rename(self.set_aside)
            self._open_segments()

    def _open_segments(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"state_dir: {self.directory} is not a directory (the spool lives there)") from None
        cursor = self._load_cursor()
        seqs = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
        self._last_seq = max([*seqs, cursor[0] if cursor else 0])
        found: list[Damage] = []
        for seq in seqs:
            self._segments.append(self._scan_segment(seq, self._path(seq), found))
        self.damaged_regions = len(found)
        self.damaged_bytes = sum(d.skipped_bytes for d in found)
        self.damage = found[:MAX_DAMAGE_NOTES]
        if self._segments and cursor is not None and cursor[0] == self._segments[0].seq:
            self._seek_cursor(cursor[1])
        # Segments with nothing left to deliver (drained before a crash, or nothing readable): remove.
        for seg in list(self._segments):
            if seg.records == 0:
                self._segments.remove(seg)
                self._unlink(seg.path)
        while self._segments and self._read_records >= self._segments[0].records:
            self._remove_first()
        self._publish()

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:010d}.seg"

    def _scan_segment(self, seq: int, path: Path, damage: list[Damage]) -> _Segment:
        """Count records and points of a segment (headers and checksums), noting any damage."""
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            seg = _Segment(seq, path, size, 0, 0, None)
            for record in iter_records(fh, seq, 0, size, damage):
                seg.records += 1
                seg.points += record.points
                if seg.oldest_ms is None:
                    seg.oldest_ms = record.spooled_at_ms
        return seg

    def _load_cursor(self) -> tuple[int, int] | None:
        try:
            seq_text, offset_text = (self.directory / "cursor").read_text().split()
            return int(seq_text), int(offset_text)
        except (FileNotFoundError, ValueError):
            return None

    def _seek_cursor(self, offset: int) -> None:
        """Start reading the first segment at the last record boundary at or before ``offset``."""
        first = self._segments[0]
        with first.path.open("rb") as fh:
            for record in iter_records(fh, first.seq, 0, first.size):
                if record.next_offset > offset:
                    break
                self._read_offset = record.next_offset
                self._read_records += 1
                self._read_points += record.points

    # --- bookkeeping ------------------------------------------------------------------------------

    def _publish(self) -> None:
        segs = self._segments
        records = sum(s.records for s in segs) - self._read_records
        points = sum(s.points for s in segs) - self._read_points
        oldest = None
        if records > 0:
            oldest = self._head_ms if self._head_ms is not None else segs[0].oldest_ms
        self._stats = SpoolStats(sum(s.size for s in segs), records, points, len(segs), oldest)

    def stats(self) -> SpoolStats:
        return self._stats

    def is_empty(self) -> bool:
        return self._stats.records <= 0

    def _write_cursor(self, seq: int, offset: int, *, durable: bool = False) -> None:
        # Fixed width, rewritten in place: no truncation, so the file never holds half a number.
        fd = os.open(self.directory / "cursor", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, _CURSOR_FORMAT.format(seq, offset).encode(), 0)
            if durable and self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _remove_first(self) -> None:
        """Forget and delete the first segment (delivered, dropped or unreadable)."""
        first = self._segments.pop(0)
        if first.seq == self._write_seq:
            self._close_writer()
        self._unlink(first.path)
        self._read_offset = self._read_records = self._read_points = 0
        self._head_ms = None
        if not self._segments:
            # Remember the last sequence number used, so a new segment never reuses an old cursor's number.
            self._write_cursor(self._last_seq, 0, durable=True)

    # --- writing ----------------------------------------------------------------------------------

    def append(self, body: bytes, points: int) -> int:
        """Append one batch; returns the number of undelivered points dropped to make room (oldest first).

        Raises OSError when the disk refuses the write and no spooled data is left to free room with."""
        stamp = int(time.time() * 1000)
        record = encode_record(body, points, compress=self.compress, spooled_at_ms=stamp)
        dropped = self._make_room(len(record))
        while True:
            try:
                self._write_record(record, points, stamp)
            except OSError as exc:
                if exc.errno not in _DISK_FULL or not self._segments:
                    self._publish()
                    raise
                # Disk full before the spool is: the same policy as a full spool, with a smaller bound.
                dropped += self._drop_first()
                continue
            self._publish()
            return dropped

    def _write_record(self, record: bytes, points: int, stamp: int) -> None:
        seg = self._writable_segment(len(record))
        assert self._write_fd is not None
        fd = self._write_fd
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except OSError:
            # Leave no torn record behind: cut back to the last whole record; the next append starts afresh.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, seg.size)
            self._close_writer()
            if seg.records == 0:
                self._segments.remove(seg)
                self._unlink(seg.path)
            raise
        seg.size += len(record)
        seg.records += 1
        seg.points += points
        if seg.oldest_ms is None:
            seg.oldest_ms = stamp

    def _writable_segment(self, record_size: int) -> _Segment:
        if self._write_fd is not None and self._segments and self._segments[-1].seq == self._write_seq:
            current = self._segments[-1]
            if current.size == 0 or current.size + record_size <= self.segment_bytes:
                return current
        self._close_writer()
        seq = self._last_seq + 1
        path = self._path(seq)
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._write_seq = seq
        self._last_seq = seq
        if self.fsync:
            self._fsync_dir()  # the new file's name must survive a power cut along with its records
        seg = _Segment(seq, path, 0, 0, 0, None)
        self._segments.append(seg)
        return seg

    def _make_room(self, record_size: int) -> int:
        dropped = 0
        while self._segments and sum(s.size for s in self._segments) + record_size > self.max_bytes:
            dropped += self._drop_first()
        return dropped

    def _drop_first(self) -> int:
        """Drop the oldest segment, undelivered records and all; returns the points dropped."""
        first = self._segments[0]
        points = first.points - self._read_points
        self.dropped_points += points
        self.dropped_records += first.records - self._read_records
        self._remove_first()
        return points

    def _close_writer(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
            self._write_seq = None

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- reading ----------------------------------------------------------------------------------

    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet delivered, or None when the spool is drained."""
        records = self.peek_many(1, 0)
        return records[0] if records else None

    def peek_many(self, max_points: int, max_bytes: int) -> list[SpoolRecord]:
        """The oldest undelivered records, in order: at least one (when there is one), then more from the
        same segment while they stay within ``max_points`` and ``max_bytes`` of payload. Empty when drained."""
        while self._segments:
            first = self._segments[0]
            try:
                fh = first.path.open("rb")
            except FileNotFoundError:
                fh = None
            if fh is not None:
                records: list[SpoolRecord] = []
                points = size = 0
                with fh:
                    end = os.fstat(fh.fileno()).st_size
                    for record in iter_records(fh, first.seq, self._read_offset, end):
                        points += record.points
                        size += len(record.payload)
                        if records and (points > max_points or size > max_bytes):
                            break
                        records.append(record)
                if records:
                    if self._head_ms != records[0].spooled_at_ms:
                        self._head_ms = records[0].spooled_at_ms
                        self._publish()
                    return records
            if first.seq == self._write_seq:
                # Nothing readable after the cursor in the segment still being written: everything in it is
                # delivered (or was unreadable). Say so in the counts, so nobody polls for records that are
                # not there.
                self._read_records, self._read_points = first.records, first.points
                self._publish()
                return []
            self._remove_first()
            self._publish()
        return []

    def ack(self, record: SpoolRecord) -> None:
        """Mark a record delivered; deletes its segment once everything in it is delivered."""
        self.ack_many([record])

    def ack_many(self, records: list[SpoolRecord]) -> None:
        """Mark records delivered (in order, as ``peek_many`` gave them); one cursor write for all."""
        advanced = False
        for record in records:
            if not self._segments or record.segment != self._segments[0].seq or record.offset < self._read_offset:
                continue  # its segment was dropped meanwhile, or it was acknowledged already
            self._read_offset = record.next_offset
            self._read_records += 1
            self._read_points += record.points
            self._head_ms = record.spooled_at_ms
            advanced = True
            if self._read_records >= self._segments[0].records:
                # Delivered completely (for the segment being written too: the next append opens a new one,
                # so a drained spool takes no space and the next outage starts on a fresh file).
                self._remove_first()
                advanced = False
        if advanced:
            self._write_cursor(self._segments[0].seq, self._read_offset)
        self._publish()

    def close(self) -> None:
        self._close_writer()
