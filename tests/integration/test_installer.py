"""systemd/install.sh staged into a temporary root (--root): users, files, modes, the credentials drop-in,
idempotence, what systemd-analyze thinks of the result, and --uninstall/--purge.

Most runs use --no-venv; a stub stands where the venv's executable would be, for systemd-analyze verify.
The runs that build the venv install a wheel of this checkout (built here, offline) with pip's --no-index
--no-deps, and give the venv this test environment's dependencies through PYTHONPATH, where a real install
downloads them: the venv, its scripts and the PATH link are the installer's own work."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import zipfile
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
    assert stat.S_IMODE(state.stat().st_mode) == 0o750  # group homeiq reads it (the CLI), others do not
    if AS_ROOT:
        assert (config.stat().st_uid, config.stat().st_gid) == (0, gid)
        assert (state.stat().st_uid, state.stat().st_gid) == (uid, gid)
    assert (root / "opt/homeiq/docs/systemd.md").exists()
    assert os.readlink(root / "usr/local/bin/homeiq") == "/opt/homeiq/venv/bin/homeiq"  # on PATH
    steps = [line for line in result.stdout.splitlines() if line.startswith("homeiq-install: [")]
    assert [line.split("]")[0] for line in steps] == [f"homeiq-install: [{n}/7" for n in range(1, 8)]


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
    # verify --root checks that every command the unit names is executable inside the root: the daemon's
    # entry point and the /bin/kill of ExecReload.
    for name in ("opt/homeiq/venv/bin/homeiq", "bin/kill"):
        stub = root / name
        stub.parent.mkdir(parents=True, exist_ok=True)
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


def test_uninstall_removes_only_its_own_path_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_installer("--root", str(root), "--no-venv")
    link = root / "usr/local/bin/homeiq"
    assert link.is_symlink()
    run_installer("--root", str(root), "--uninstall")
    assert not link.is_symlink()
    assert not link.exists()

    link.write_text("#!/bin/sh\necho another homeiq\n")  # someone else's: neither replaced nor removed
    result = run_installer("--root", str(root), "--no-venv")
    assert "is not a link to /opt/homeiq/venv/bin/homeiq: left alone" in result.stdout
    run_installer("--root", str(root), "--uninstall")
    assert link.read_text() == "#!/bin/sh\necho another homeiq\n"


# --- the venv step, for real ----------------------------------------------------------------------------


def _site_packages() -> str:
    import sysconfig  # noqa: PLC0415

    return sysconfig.get_paths()["purelib"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy (the build leaves build/ and egg-info behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "homeiq_daemon", src / "homeiq_daemon", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    [built] = out.glob("homeiq_daemon-*.whl")
    with zipfile.ZipFile(built) as archive:  # the licence text travels with the wheel
        [licence] = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(licence) == (ROOT / "LICENSE").read_bytes()
    return built


def _with_venv(root: Path, wheel: Path, *more: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": _site_packages()}
    args = ["--root", str(root), "--source", str(wheel), "--pip-arg", "--no-index", "--pip-arg", "--no-deps", *more]
    result = subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def _can_bind_mount() -> bool:
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30, check=False)
    return AS_ROOT and probe.returncode == 0


def test_the_venv_is_built_for_its_final_place_and_homeiq_runs_from_path(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    result = _with_venv(root, wheel)
    assert "Successfully installed homeiq-daemon" in result.stdout  # pip's own progress is shown, not hidden
    assert "installed homeiq 0.1.0" in result.stdout
    venv_bin = root / "opt/homeiq/venv/bin"
    assert (venv_bin / "homeiq").read_text().splitlines()[0] == "#!/opt/homeiq/venv/bin/python"
    for script in venv_bin.iterdir():
        if script.is_file() and not script.is_symlink():
            assert str(root) not in script.read_text(errors="replace"), f"{script} names the staging root"
    assert os.readlink(root / "usr/local/bin/homeiq") == "/opt/homeiq/venv/bin/homeiq"

    # Idempotent: a second run (an upgrade with the same wheel) keeps a working, relocated venv.
    again = _with_venv(root, wheel)
    assert "installed homeiq 0.1.0" in again.stdout
    assert (venv_bin / "homeiq").read_text().splitlines()[0] == "#!/opt/homeiq/venv/bin/python"

    if not _can_bind_mount():
        pytest.skip("needs root and mount namespaces to put the staged /opt where the venv expects to live")
    # The staged tree where it will live: /opt bound to the staged one in a private mount namespace, and the
    # PATH link run as a user would.
    script = f"mount --bind {root}/opt /opt && exec {root}/usr/local/bin/homeiq --version"
    ran = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": _site_packages()},
    )  # fmt: skip
    assert (ran.returncode, ran.stdout.strip()) == (0, "homeiq 0.1.0"), ran.stderr

    run_installer("--root", str(root), "--uninstall")
    assert not (root / "opt/homeiq").exists()
    assert not (root / "usr/local/bin/homeiq").is_symlink()


# --- the CLI finds the installed service ------------------------------------------------------------------


def _cli(*args: str, user: tuple[int, int, list[int]] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as root (user None) or as uid/gid/supplementary groups, with no service environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    cmd = [sys.executable, "-m", "homeiq_daemon", *args]
    if user is not None:
        uid, gid, groups = user
        groups_arg = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", *groups_arg, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)


@pytest.mark.skipif(not AS_ROOT, reason="switching users (the service's, a group member, a stranger) needs root")
def test_root_and_group_members_read_the_service_data_without_the_ha_token(secrets: Path) -> None:
    import tempfile  # noqa: PLC0415

    base = Path(tempfile.mkdtemp(prefix="homeiq-installer-", dir="/tmp"))  # other users must traverse it
    try:
        base.chmod(0o755)
        root = base / "root"
        run_installer("--root", str(root), "--secrets", str(secrets), "--no-venv")
        uid, gid = ids(root, "homeiq")
        (root / "etc/homeiq/credentials/webhook_frontdoor").unlink()  # no such target in this config
        config = root / "etc/homeiq/homeiq.toml"
        state = root / "var/lib/homeiq"
        config.write_text(f'state_dir = "{state}"\n')
        # The service (its own user) records the example into the embedded history.
        replay = _cli("--config", str(config), "run", "--replay", str(ROOT / "examples/home.jsonl"),
                      user=(uid, gid, []))  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        assert (state / "history.db").exists()
        # Now the admin points it at Home Assistant; the token lives in the root-only credentials.
        config.write_text(f'state_dir = "{state}"\n[home_assistant]\nurl = "http://127.0.0.1:9"\n')

        as_root = _cli("--config", str(config), "check-config")
        assert as_root.returncode == 0, as_root.stderr
        assert '"token": "**********"' in as_root.stdout  # found in credentials/ beside the config
        assert "ha-token-value" not in as_root.stdout + as_root.stderr

        member = (4242, 4242, [gid])
        for who in (None, member):
            history = _cli("--config", str(config), "history", "sensor.kitchen_temperature", "--since", "3650d",
                           "--limit", "3", user=who)  # fmt: skip
            assert history.returncode == 0, (who, history.stderr)
            assert len(history.stdout.splitlines()) == 3, (who, history.stdout)
            for command in (["entities"], ["devices"], ["webhooks", "log"]):
                ran = _cli("--config", str(config), *command, user=who)
                assert ran.returncode == 0, (who, command, ran.stderr)
                assert "token is required" not in ran.stderr

        # A member cannot read the secrets, so what needs the token says so; a stranger reads nothing.
        checked = _cli("--config", str(config), "check-config", user=member)
        assert checked.returncode == 78
        assert "home_assistant.token is required" in checked.stderr
        stranger = _cli("--config", str(config), "history", "sensor.kitchen_temperature", user=(4243, 4243, []))
        assert stranger.returncode == 78
        assert "is not readable by this user" in stranger.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
