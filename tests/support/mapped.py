"""The point the daemon writes for one state, read back from its line with the tests' own parser."""

from __future__ import annotations

from homeiq_daemon.model import EntityState
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.sinks.lineprotocol import Point
from tests.support.lineproto import parse_line


def mapped_point(mapper: PointMapper, state: EntityState) -> Point | None:
    """``mapper.map_line(state)`` parsed (tests/support/lineproto.py), or None when the state is not written."""
    line = mapper.map_line(state)
    if line is None:
        return None
    parsed = parse_line(line)
    assert parsed.time_ns is not None, line
    return Point(parsed.measurement, parsed.tags, parsed.fields, parsed.time_ns)
