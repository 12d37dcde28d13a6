"""systemd/install.sh staged into a temporary root (--root): users, files, modes, the credentials drop-in,
idempotence, what systemd-analyze thinks of the result, and --uninstall/--purge.

The virtualenv step runs pip against a package index, so these runs use --no-venv (no network in tests);
a stub stands where the venv's executable would be, for systemd-analyze verify."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "systemd" / "install.sh"
AS_ROOT = os.geteuid() == 0


def run_installer(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "ha_token").write_text("ha-token-value\n")
    (directory / "influxdb_token").write_text("influx-token-value")
    (directory / "webhook_frontdoor").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    return directory


def ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {name} in {root}/etc/passwd")


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, uid, gid, content hash or link target), for comparing two runs."""
    out: dict[str, tuple[int, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, digest)
    return out


def test_fresh_install(tmp_path: Path, secrets: Path) -> None:
    root = tmp_path / "root"
    result = run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    assert "installed 3 credential(s)" in result.stdout

    uid, gid = ids(root, "homeiq")
    passwd = (root / "etc/passwd").read_text()
    assert f"homeiq:x:{uid}:{gid}:homeiq daemon:/var/lib/homeiq:/usr/sbin/nologin" in passwd

    unit = root / "etc/systemd/system/homeiq.service"
    assert unit.read_bytes() == (ROOT / "systemd/homeiq.service").read_bytes()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/homeiq.service") == (
        "/etc/systemd/system/homeiq.service"
    )

    credentials = root / "etc/homeiq/credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    for name in ("ha_token", "influxdb_token", "webhook_frontdoor"):
        path = credentials / name
        assert path.read_bytes() == (secrets / name).read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        if AS_ROOT:
            assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    # The unit names ha_token and influxdb_token itself; only the webhook secret needs the drop-in.
    dropin = (root / "etc/systemd/system/homeiq.service.d/credentials.conf").read_text()
    assert [line for line in dropin.splitlines() if not line.startswith("#")] == [
        "[Service]",
        "LoadCredential=webhook_frontdoor:/etc/homeiq/credentials/webhook_frontdoor",
    ]

    config = root / "etc/homeiq/homeiq.toml"
    example = ROOT / "config/homeiq.example.toml"
    if example.exists():
        assert config.read_bytes() == example.read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    state = root / "var/lib/homeiq"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    if AS_ROOT:
        assert (config.stat().st_uid, config.stat().st_gid) == (0, gid)
        assert (state.stat().st_uid, state.stat().st_gid) == (uid, gid)
    assert (root / "opt/homeiq/docs/systemd.md").exists()


def test_rerunning_changes_nothing_and_keeps_an_edited_config(tmp_path: Path, secrets: Path) -> None:
    root = tmp_path / "root"
    run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    config = root / "etc/homeiq/homeiq.toml"
    config.write_text('[home_assistant]\nurl = "http://homeassistant.local:8123"\n')
    before = snapshot(root)
    result = run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    assert "kept" in result.stdout
    assert snapshot(root) == before


def test_secrets_update_and_the_dropin_follows_the_credential_files(tmp_path: Path, secrets: Path) -> None:
    root = tmp_path / "root"
    run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    dropin = root / "etc/systemd/system/homeiq.service.d/credentials.conf"

    (secrets / "ha_token").write_text("rotated\n")
    (secrets / "webhook_garage").write_text("whsec_second")
    run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    assert (root / "etc/homeiq/credentials/ha_token").read_text() == "rotated\n"
    assert "LoadCredential=webhook_garage:/etc/homeiq/credentials/webhook_garage" in dropin.read_text()

    # Removed by hand, then a rerun without --secrets: the drop-in lists what is there, nothing else.
    (root / "etc/homeiq/credentials/webhook_frontdoor").unlink()
    (root / "etc/homeiq/credentials/webhook_garage").unlink()
    run_installer("--root", str(root), "--no-venv")
    assert not dropin.exists()
    assert not dropin.parent.exists()
    assert (root / "etc/homeiq/credentials/ha_token").read_text() == "rotated\n"  # kept


def test_the_staged_unit_and_dropin_pass_systemd_analyze_verify(tmp_path: Path, secrets: Path) -> None:
    root = tmp_path / "root"
    run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    stub = root / "opt/homeiq/venv/bin/homeiq"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (.ci/run does)"
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", "homeiq.service"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # The drop-in is part of what was verified: a typo in it is reported.
    dropin = root / "etc/systemd/system/homeiq.service.d/credentials.conf"
    dropin.write_text(dropin.read_text().replace("LoadCredential=", "LoadCredentials="))
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", "homeiq.service"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "credentials.conf:3: Unknown key 'LoadCredentials'" in result.stderr


def test_a_bad_secret_name_is_refused(tmp_path: Path, secrets: Path) -> None:
    (secrets / "bad:name").write_text("x")
    result = run_installer("--root", str(tmp_path / "root"), "--secrets", str(secrets), "--no-venv", check=False)
    assert result.returncode != 0
    assert "secret file name bad:name" in result.stderr


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    result = run_installer("--root", str(tmp_path / "root"), "--frobnicate", check=False)
    assert result.returncode != 0
    assert "unknown option: --frobnicate" in result.stderr


def test_uninstall_keeps_data_and_purge_removes_everything(tmp_path: Path, secrets: Path) -> None:
    root = tmp_path / "root"
    run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
    (root / "var/lib/homeiq/history.db").write_bytes(b"precious")

    result = run_installer("--root", str(root), "--uninstall")
    assert "kept" in result.stdout
    assert not (root / "etc/systemd/system/homeiq.service").exists()
    assert not (root / "etc/systemd/system/homeiq.service.d").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/homeiq.service").is_symlink()
    assert not (root / "opt/homeiq").exists()
    assert (root / "var/lib/homeiq/history.db").read_bytes() == b"precious"
    assert (root / "etc/homeiq/credentials/ha_token").exists()
    assert "homeiq:" in (root / "etc/passwd").read_text()

    run_installer("--root", str(root), "--uninstall", "--purge")
    assert not (root / "etc/homeiq").exists()
    assert not (root / "var/lib/homeiq").exists()
    assert not (root / "etc/sysusers.d/homeiq.conf").exists()
    assert "homeiq:" not in (root / "etc/passwd").read_text()
