"""The state directory: created private to the service (group homeiq may read it), checked writable at start."""

from __future__ import annotations

from pathlib import Path

from homeiq_daemon.errors import StateDirError


def prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)  # group homeiq may read (the CLI), others not
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StateDirError(f"state_dir: cannot write to {path}: {exc.strerror or exc}") from None
