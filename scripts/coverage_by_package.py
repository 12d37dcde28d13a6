#!/usr/bin/env python3
"""Prints line coverage per package from a combined coverage data file (``coverage json`` output on stdin
or as the first argument): one row per folder under homeiq_daemon/ (top-level modules as "homeiq_daemon"),
then the total."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import PurePosixPath


def package_of(path: str) -> str:
    parts = PurePosixPath(path).parts
    if parts[0] == "homeiq_daemon" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0]


def main() -> int:
    source = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin  # noqa: SIM115
    with source:
        report = json.load(source)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, data in report["files"].items():
        summary = data["summary"]
        row = totals[package_of(path)]
        row[0] += summary["num_statements"]
        row[1] += summary["covered_lines"]
    width = max(len(name) for name in totals) + 2
    print(f"{'package'.ljust(width)}{'statements':>11}{'missed':>8}{'cover':>8}")
    for name in sorted(totals):
        statements, covered = totals[name]
        percent = 100.0 * covered / statements if statements else 100.0
        print(f"{name.ljust(width)}{statements:>11}{statements - covered:>8}{percent:>7.1f}%")
    all_statements = sum(row[0] for row in totals.values())
    all_covered = sum(row[1] for row in totals.values())
    print(f"{'TOTAL'.ljust(width)}{all_statements:>11}{all_statements - all_covered:>8}"
          f"{100.0 * all_covered / max(all_statements, 1):>7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
