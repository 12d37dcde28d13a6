"""The licence text ships with the package, matches the declared licence, and the changelog has this release."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path

from homeiq_daemon import __version__

ROOT = Path(__file__).resolve().parents[3]


def test_the_declared_licence_has_its_text_in_the_repository_and_in_the_installed_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text

    dist = distribution("homeiq-daemon")  # what the build backend wrote for this install
    assert dist.metadata["License-Expression"] == "MIT"
    assert dist.metadata.get_all("License-File") == ["LICENSE"]
    shipped = [f for f in dist.files or [] if f.name == "LICENSE"]
    assert shipped, "LICENSE is not among the installed distribution's files"
    assert Path(str(shipped[0].locate())).read_text() == text


def test_the_changelog_follows_keep_a_changelog_and_names_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert __version__ in headings
    for heading in headings:  # every version heading has its link reference at the bottom
        assert re.search(rf"^\[{re.escape(heading)}\]: \S+$", text, flags=re.MULTILINE), heading
    for section in re.findall(r"^### (\w+)", text, flags=re.MULTILINE):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
