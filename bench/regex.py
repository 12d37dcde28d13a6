"""Digit-tail rule on the pathological input ``"1" * n + ".x."``: Home Assistant's pattern vs ours.

Reference (same run, same inputs): HA's ``RE_DIGIT_TAIL`` (``^[^\\.]*\\d+\\.?\\d+[^\\.]*$``), which
backtracks cubically; it runs in a child process killed after ``--pattern-timeout-s`` so a long input
reports a lower bound instead of hanging the bench. Ours (``homeiq_daemon/pipeline/digittail.py``) is timed
on the same lengths and on much longer ones, to show that it grows linearly. Also times the whole
``PointMapper.map_line`` on a state whose attribute is the pathological string.

Prints one JSON object. Reproduce with:

    .venv/bin/python bench/regex.py [--lengths 200,400,1000] [--pattern-timeout-s 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HA_PATTERN = r"^[^\.]*\d+\.?\d+[^\.]*$"

_CHILD = (
    "import re, sys, time; p = re.compile(sys.argv[1]); s = '1' * int(sys.argv[2]) + '.x.'; "
    "t = time.perf_counter(); p.match(s); print(time.perf_counter() - t)"
)


def pathological(n: int) -> str:
    return "1" * n + ".x."


def ha_pattern_s(n: int, timeout_s: float) -> float | None:
    try:
        out = subprocess.run([sys.executable, "-c", _CHILD, HA_PATTERN, str(n)], capture_output=True, text=True,
                             timeout=timeout_s, check=True).stdout
    except subprocess.TimeoutExpired:
        return None
    return float(out)


def ours_s(n: int, repeat: int) -> float:
    sys.path.insert(0, str(ROOT))
    from homeiq_daemon.pipeline.digittail import has_digit_tail

    text = pathological(n)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        has_digit_tail(text)
        best = min(best, time.perf_counter() - started)
    return best


def map_line_s(n: int) -> float:
    from homeiq_daemon.config import MappingSettings
    from homeiq_daemon.model import EntityState, iso_to_ns
    from homeiq_daemon.pipeline.mapping import PointMapper

    stamp = "2026-11-20T12:00:00+00:00"
    state = EntityState("sensor.x", pathological(n), {"note": pathological(n)}, stamp, stamp, iso_to_ns(stamp))
    started = time.perf_counter()
    PointMapper(MappingSettings()).map_line(state)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="200,400,1000")
    parser.add_argument("--long-lengths", default="10000,100000,1000000")
    parser.add_argument("--pattern-timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    long_lengths = [int(x) for x in args.long_lengths.split(",")]
    rows = []
    for n in lengths:
        ha = ha_pattern_s(n, args.pattern_timeout_s)
        rows.append({
            "chars": n,
            "ha_pattern_s": round(ha, 4) if ha is not None else f"> {args.pattern_timeout_s:g} (killed)",
            "ours_s": round(ours_s(n, 50), 9),
            "map_line_s": round(map_line_s(n), 6),
        })
    linear = [{"chars": n, "ours_s": round(ours_s(n, 5), 9), "map_line_s": round(map_line_s(n), 6)}
              for n in long_lengths]
    print(json.dumps({
        "command": "bench/regex.py " + " ".join(sys.argv[1:]),
        "input": "'1' * chars + '.x.'",
        "reference": "Home Assistant RE_DIGIT_TAIL " + HA_PATTERN,
        "rows": rows,
        "ours_long_inputs": linear,
    }, indent=2))


if __name__ == "__main__":
    main()
