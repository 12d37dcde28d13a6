"""Spool record framing: encoding one record, and reading valid records back from a segment file.

A record is

    magic b"HQSP" | payload length u32 | points u32 | flags u8 | spooled_at_ms u64 | crc32 u32 | payload

(big-endian; the crc32 covers points, flags, spooled_at_ms and the payload). The payload is one batch body in
line protocol, gzip-compressed when ``flags & 1``. The flags byte also carries the format version: its high
four bits are the version (0, today's format, is all this code writes and reads) and bits 1-3 are reserved.
A record whose checksum holds but whose version or reserved bits are set was written by a newer homeiq: the
reader raises NewerSpoolFormat instead of reading it as a plain record or as damage. The reader follows
lengths; only after damage (bad magic, a length past the end, a checksum mismatch) does it search for the
next magic, so the valid records after a damaged stretch are found again. No sockets and no state: spool.py
owns the files.
"""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"HQSP"
_HEADER = struct.Struct(">4sIIBQI")
HEADER_SIZE = _HEADER.size
_CRC_PART = struct.Struct(">IBQ")
FLAG_GZIP = 1
FORMAT_VERSION = 0
_VERSION_SHIFT = 4
KNOWN_FLAGS = FLAG_GZIP | (FORMAT_VERSION << _VERSION_SHIFT)


class NewerSpoolFormat(Exception):
    """A valid record of a spool format this version does not know (written by a newer homeiq)."""

    def __init__(self, segment: int, offset: int, flags: int) -> None:
        self.segment = segment
        self.offset = offset
        self.flags = flags
        self.version = flags >> _VERSION_SHIFT
        what = f"format version {self.version}" if self.version != FORMAT_VERSION else f"unknown flags {flags:#04x}"
        super().__init__(
            f"spool segment {segment:010d}.seg offset {offset} holds a record of {what} "
            f"(this homeiq reads format version {FORMAT_VERSION})"
        )
MAX_RECORD_BYTES = 256 * 1024 * 1024
_SCAN_CHUNK = 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class Damage:
    segment: int
    offset: int
    skipped_bytes: int
    reason: str


def encode_record(body: bytes, points: int, *, compress: bool, spooled_at_ms: int | None = None) -> bytes:
    """One framed record holding ``body`` (gzip level 1 when ``compress``: fast, and about 9x smaller here)."""
    flags = 0
    payload = body
    if compress:
        payload = gzip.compress(body, compresslevel=1, mtime=0)
        flags |= FLAG_GZIP
    stamp = int(time.time() * 1000) if spooled_at_ms is None else spooled_at_ms
    crc = zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(points, flags, stamp)))
    return _HEADER.pack(MAGIC, len(payload), points, flags, stamp, crc) + payload


def _find_magic(fh: BinaryIO, start: int, end: int) -> int:
    """Offset of the next MAGIC at or after ``start`` (before ``end``), or ``end``; reads in chunks."""
    pos = start
    while pos < end:
        fh.seek(pos)
        chunk = fh.read(min(_SCAN_CHUNK, end - pos))
        if not chunk:
            break
        found = chunk.find(MAGIC)
        if found >= 0:
            return pos + found
        if pos + len(chunk) >= end:
            break
        pos += len(chunk) - (len(MAGIC) - 1)  # a magic may straddle two chunks
    return end


def iter_records(
    fh: BinaryIO, seq: int, start: int, end: int, damage: list[Damage] | None = None
) -> Iterator[SpoolRecord]:
    """Valid records in ``fh`` between ``start`` and ``end``; damaged stretches are skipped and, when
    ``damage`` is given, noted there. Never raises on bad data and never yields a record whose crc fails;
    raises NewerSpoolFormat on a valid record of a newer format (that is not damage)."""
    pos = start
    while pos < end:
        fh.seek(pos)
        header = fh.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            reason = "torn header at the end of the segment"
        else:
            magic, length, points, flags, stamp, crc = _HEADER.unpack(header)
            if magic != MAGIC:
                reason = "bad magic"
            elif length > MAX_RECORD_BYTES or pos + HEADER_SIZE + length > end:
                reason = "length runs past the end of the segment (torn write or damaged length)"
            else:
                payload = fh.read(length)
                if zlib.crc32(payload, zlib.crc32(_CRC_PART.pack(points, flags, stamp))) == crc:
                    if flags & ~KNOWN_FLAGS:
                        raise NewerSpoolFormat(seq, pos, flags)
                    nxt = pos + HEADER_SIZE + length
                    yield SpoolRecord(seq, pos, nxt, points, flags, stamp, payload)
                    pos = nxt
                    continue
                reason = "checksum mismatch"
        resume = _find_magic(fh, pos + 1, end)
        if damage is not None:
            damage.append(Damage(seq, pos, resume - pos, reason))
        pos = resume
