"""The interpreter a Raspberry Pi runs the daemon with: a virtualenv holding the package's runtime dependencies
only, as ``systemd/install.sh`` builds it, and none of the test tools (some of which, once installed, are
imported by the runtime's own libraries: structlog loads ``rich`` when it finds it, and ``.venv`` has it for
import-linter). Built once under ``~/.cache/homeiq-bench/runtime-venv`` and rebuilt when pyproject.toml
changes; the daemon itself is still imported from the checkout (``PYTHONPATH``), so the code measured is the
code in the working tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HOMEIQ_BENCH_CACHE", Path.home() / ".cache" / "homeiq-bench"))


def runtime_python() -> str:
    venv = CACHE / "runtime-venv"
    stamp = venv / ".pyproject-sha256"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    python = venv / "bin" / "python"
    if not python.exists() or not stamp.exists() or stamp.read_text() != want:
        sys.stderr.write(f"bench: building the runtime-only virtualenv at {venv} (once)\n")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.write_text(want)
    return str(python)
