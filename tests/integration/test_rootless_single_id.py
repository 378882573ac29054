"""Issue 14: rootless with a single id. A user with no /etc/subuid range gets a user
namespace of one id (itself as root): images whose files all belong to root build, RUN
included; a file of any other owner is a clear error naming it and what fixes it.

distill runs as that user from the outside (setpriv), so its own re-exec into the
namespace is what is tested here (tests/rootless/run starts the build tests the same
way, with a user that has a range)."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers.bases import write_busybox_rootfs_tar

pytestmark = pytest.mark.integration

USER = "distill-single-id"
DISTILL_RL = "/opt/distill-rootless/venv/bin/distill"


@pytest.fixture(scope="module")
def single_id_user() -> str:
    subprocess.run([str(REPO / "tests/rootless/run"), "--prepare"], check=True,
                   capture_output=True)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "-K", "SUB_UID_COUNT=0",
                        "-K", "SUB_GID_COUNT=0", USER], check=True)
    for table in ("/etc/subuid", "/etc/subgid"):
        lines = Path(table).read_text().splitlines(keepends=True)
        assert not any(line.startswith(f"{USER}:") for line in lines), \
            f"{USER} must have no {table} range"
    return USER


@pytest.fixture
def work(single_id_user: str) -> Iterator[Path]:
    """A directory of the user's (pytest's own tmp_path lies under a 0700 directory)."""
    user = pwd.getpwnam(single_id_user)
    path = Path(tempfile.mkdtemp(prefix="distill-single-id-", dir="/tmp"))
    os.chmod(path, 0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path)


def _as_user(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    user = pwd.getpwnam(USER)
    env = {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin", "DISTILL_ROOT": str(work / "store")}
    return subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups",
                           "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           DISTILL_RL, *args], capture_output=True, text=True, timeout=600,
                          check=False)


def _context(work: Path, dockerfile: str) -> Path:
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for path in (ctx, ctx / "Dockerfile"):
        os.chown(path, pwd.getpwnam(USER).pw_uid, -1)
    return ctx


def test_a_root_owned_image_builds_with_one_id(work: Path) -> None:
    base = write_busybox_rootfs_tar(work / "busybox.tar")
    os.chmod(base, 0o644)
    assert _as_user(work, "import", str(base), "busybox:latest").returncode == 0
    ctx = _context(work, "FROM busybox\nRUN id -u > /uid && cat /proc/self/uid_map > /map\n"
                         "RUN echo hi > /hi\n")
    proc = _as_user(work, "build", "--progress", "plain", "-o", str(work / "out"), str(ctx))
    assert proc.returncode == 0, proc.stderr
    assert (work / "out/uid").read_text() == "0\n"
    assert (work / "out/map").read_text().split() == ["0", "0", "1"]   # one id, no more
    assert (work / "out/hi").read_text() == "hi\n"
    # the files are the user's own (type=local rootless), in a store the user owns
    assert (work / "out/hi").stat().st_uid == pwd.getpwnam(USER).pw_uid
    assert (work / "store").stat().st_uid == pwd.getpwnam(USER).pw_uid


def test_a_file_of_another_owner_is_a_clear_error(work: Path) -> None:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("var/mail")
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o2775, 0, 8
        tar.addfile(info)
    (work / "mail.tar").write_bytes(layer.getvalue())
    os.chmod(work / "mail.tar", 0o644)
    proc = _as_user(work, "import", str(work / "mail.tar"), "mail:latest")
    ctx = _context(work, "FROM mail\nRUN true\n")
    if proc.returncode == 0:     # import stores the layer; unpacking is where it fails
        proc = _as_user(work, "build", "--progress", "plain", str(ctx))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "'var/mail' belongs to uid 0, gid 8, which this rootless build has no id for" \
        in proc.stderr, proc.stderr
    assert "no subordinate id range" in proc.stderr
    assert f"usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST {USER}" in proc.stderr


def test_run_as_another_user_is_a_clear_error(work: Path) -> None:
    base = write_busybox_rootfs_tar(work / "busybox.tar")
    os.chmod(base, 0o644)
    assert _as_user(work, "import", str(base), "busybox:latest").returncode == 0
    ctx = _context(work, "FROM busybox\nUSER 1000\nRUN true\n")
    proc = _as_user(work, "build", "--progress", "plain", str(ctx))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "uid 1000 is outside the ids a RUN step can use (0 to 0)" in proc.stderr


def test_a_debian_base_needs_a_range_and_says_so(work: Path) -> None:
    proc = _as_user(work, "base", "debian", "-t", "debian:bookworm")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "a Debian base cannot be made with a single id" in proc.stderr
    assert "no subordinate id range" in proc.stderr


def test_the_store_is_in_the_users_home_without_home_set(work: Path) -> None:
    """Inside its namespace distill is uid 0, whose home is /root: the user's own HOME
    is kept for it even when the environment has none."""
    user = pwd.getpwnam(USER)
    proc = subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups",
                           "env", "-i", "PATH=/usr/bin:/bin", DISTILL_RL, "images"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert Path(user.pw_dir, ".local/share/distill").is_dir()
