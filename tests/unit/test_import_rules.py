"""The import rules in pyproject.toml ([tool.importlinter], docs/architecture.md) hold, and they do catch a
violation: the same check on a copy of the package with one forbidden import added fails, naming the rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (test extra)")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "homeiq_daemon", tree / "homeiq_daemon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_package_keeps_every_import_rule(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "rule"),
    [
        ("sources/replay.py", "import homeiq_daemon.sinks.embedded", "Sources never reach the sinks"),
        ("runtime/stats.py", "import homeiq_daemon.pipeline.core", "Runtime imports no feature package"),
        ("sinks/embedded.py", "import homeiq_daemon.pipeline.tracking", "Sinks know nothing of sources"),
        ("config/sections.py", "import homeiq_daemon.webhooks.rules", "each layer imports only the layers below"),
    ],
)
def test_a_forbidden_import_fails_the_check(tmp_path: Path, module: str, line: str, rule: str) -> None:
    tree = _copy(tmp_path)
    target = tree / "homeiq_daemon" / module
    target.write_text(target.read_text() + f"\n{line}  # the violation under test\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{rule}" in result.stdout
    assert "BROKEN" in result.stdout


def test_an_import_cycle_inside_a_package_fails_the_check(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    target = tree / "homeiq_daemon" / "runtime" / "logformat.py"  # logs.py imports it: close the circle
    target.write_text(target.read_text() + "\nimport homeiq_daemon.runtime.logs  # the cycle under test\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout
    assert "homeiq_daemon.runtime" in result.stdout
