"""RUN as a non-root user: the identity runc gives a container process.

uid, gid and supplementary groups as BuildKit sets them, ids mapped to
themselves (root's files stay root's), no capabilities, and a user namespace
owned by root. The caller resolves USER against /etc/passwd and /etc/group;
here uid, gid and groups are passed explicitly, as the caller would.

Needs root, overlayfs, bwrap and /bin/busybox (Debian busybox-static).
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.errors import SandboxError
from distill.sandbox import RunSpec, overlay_mount, run_in_rootfs
from distill.sandbox._idmap import IdRange, as_container_root, sandbox_range
from distill.sandbox.run import bwrap_argv, sandbox_ids
from tests.helpers.bases import install_busybox

pytestmark = pytest.mark.integration

PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"
#: Docker's default capability set for root, as /proc/self/status shows it.
DOCKER_ROOT_CAPS = "00000000a80425fb"
NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4)


def make_rootfs(rootfs: Path) -> None:
    """busybox with applet links, users app (1000) and staff (50), dirs of various owners."""
    install_busybox(rootfs)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    for path, mode, owner in [
        ("tmp", 0o1777, (0, 0)),
        ("home/app", 0o755, (1000, 1000)),
        ("opt", 0o755, (0, 0)),
        ("shared", 0o775, (0, 50)),
        ("other", 0o755, (1234, 4321)),
    ]:
        (rootfs / path).mkdir(parents=True, exist_ok=True)
        os.chmod(rootfs / path, mode)
        os.chown(rootfs / path, *owner)


@pytest.fixture
def base() -> Iterator[Path]:
    """A 0711 working directory holding ``rootfs/``."""
    work = Path(tempfile.mkdtemp(prefix="distill-users-"))
    os.chmod(work, 0o711)
    make_rootfs(work / "rootfs")
    try:
        yield work
    finally:
        shutil.rmtree(work)


def scratch(work: Path) -> Path:
    path = work / "scratch"
    path.mkdir()
    return path


def run(rootfs: Path, script: str, **kwargs: object) -> tuple[int, str]:
    out = io.BytesIO()
    spec = RunSpec(argv=["/bin/sh", "-c", script], env=dict(PATH), **kwargs)  # type: ignore[arg-type]
    return run_in_rootfs(rootfs, spec, stdout=out, idmapped=True), out.getvalue().decode()


# USER as written in the Dockerfile -> what the caller passes -> `id` under buildah and BuildKit.
@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        pytest.param(
            {"uid": 1000, "gid": 1000, "groups": (50,)},
            "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)",
            id="USER 1000",
        ),
        pytest.param(
            {"uid": 1000, "gid": 1000},
            "uid=1000(app) gid=1000(app) groups=1000(app)",
            id="USER 1000:1000",
        ),
        pytest.param(
            {"uid": 1000, "gid": 50},
            "uid=1000(app) gid=50(staff) groups=50(staff)",
            id="USER app:staff",
        ),
        pytest.param({}, "uid=0(root) gid=0(root) groups=0(root)", id="root"),
        pytest.param(
            {"uid": 0, "gid": 50},
            "uid=0(root) gid=50(staff) groups=50(staff)",
            id="USER 0:50",
        ),
        pytest.param(
            {"uid": 1000, "gid": 1000, "groups": (1000, 50, 50)},
            "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)",
            id="groups deduplicated",
        ),
    ],
)
def test_id_matches_buildkit(base: Path, identity: dict[str, object], expected: str) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "id", **identity)
    assert (code, out) == (0, expected + "\n")


def test_files_created_are_owned_by_uid_and_gid(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        script = "touch /tmp/a /home/app/b && mkdir /home/app/c"
        assert run(mnt.merged, script, uid=1000, gid=1000, groups=(50,)) == (0, "")
        assert run(mnt.merged, "touch /tmp/d", uid=1000, gid=50) == (0, "")
        owners = {
            name: (os.lstat(mnt.upper / name).st_uid, os.lstat(mnt.upper / name).st_gid)
            for name in ("tmp/a", "home/app/b", "home/app/c", "tmp/d")
        }
    assert owners == {
        "tmp/a": (1000, 1000),
        "home/app/b": (1000, 1000),
        "home/app/c": (1000, 1000),
        "tmp/d": (1000, 50),
    }


def test_other_owners_keep_their_ids_inside(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(
            mnt.merged,
            "stat -c '%u:%g %n' /etc/passwd /bin/busybox /shared /other /home/app; "
            "cat /proc/self/uid_map /proc/self/gid_map",
            uid=1000,
            gid=1000,
        )
    assert code == 0, out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines == [
        "0:0 /etc/passwd",
        "0:0 /bin/busybox",
        "0:50 /shared",
        "1234:4321 /other",
        "1000:1000 /home/app",
        "0 2147483648 2147483647",
        "0 2147483648 2147483647",
    ]


def test_permissions_are_those_of_uid_and_groups(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "touch /opt/x", uid=1000, gid=1000, groups=(50,))
        assert code != 0 and "Permission denied" in out
        code, out = run(mnt.merged, "touch /etc/passwd", uid=1000, gid=1000)
        assert code != 0 and "Permission denied" in out
        # /shared is root:staff 0775: writable through the supplementary group only.
        code, out = run(mnt.merged, "touch /shared/no", uid=1000, gid=1000)
        assert code != 0 and "Permission denied" in out
        assert run(mnt.merged, "touch /shared/yes", uid=1000, gid=1000, groups=(50,)) == (0, "")
        assert sorted(p.name for p in (mnt.upper / "shared").iterdir()) == ["yes"]
        assert not (mnt.upper / "opt").exists()


def test_capabilities(base: Path) -> None:
    """Docker: a non-root process has none; root has the default set."""
    script = "grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status"
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, user = run(mnt.merged, script, uid=1000, gid=1000, groups=(50,))
        assert code == 0, user
        code, root = run(mnt.merged, script)
        assert code == 0, root
    assert dict(line.split() for line in user.splitlines()) == {
        "CapInh:": "0" * 16,
        "CapPrm:": "0" * 16,
        "CapEff:": "0" * 16,
        "CapAmb:": "0" * 16,
    }
    root_caps = dict(line.split() for line in root.splitlines())
    assert (root_caps["CapPrm:"], root_caps["CapEff:"]) == (DOCKER_ROOT_CAPS, DOCKER_ROOT_CAPS)


def test_rootfs_under_a_closed_directory(tmp_path: Path) -> None:
    closed = tmp_path / "closed"  # pytest's tmp dirs are 0700 too: uid 1000 cannot enter
    closed.mkdir(mode=0o700)
    make_rootfs(closed / "rootfs")
    (closed / "scratch").mkdir()
    with overlay_mount([closed / "rootfs"], closed / "scratch", sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "id -u; touch /tmp/mine", cwd="/home/app", uid=1000, gid=1000)
        assert (code, out) == (0, "1000\n")
        assert os.lstat(mnt.upper / "tmp/mine").st_uid == 1000
    assert "distill-run-" not in Path("/proc/self/mountinfo").read_text()


def test_network_none_as_non_root(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /proc/net/dev", uid=1000, gid=1000, network="none")
    assert code == 0, out
    assert {line.split(":")[0].strip() for line in out.splitlines() if ":" in line} == {"lo"}


def _find_process(argv: list[str], deadline: float) -> int | None:
    """The pid of the process running exactly ``argv`` (not bwrap, which has it in its own)."""
    cmdline = b"".join(os.fsencode(arg) + b"\0" for arg in argv)
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "cmdline").read_bytes() == cmdline:
                        return int(entry.name)
                except OSError:
                    continue
        time.sleep(0.05)
    return None


def test_user_namespace_belongs_to_the_unprivileged_range(base: Path) -> None:
    """Owned by host uid 1000, every host process of uid 1000 could take over the sandbox;
    the RUN's user and the namespace's owner are host ids no account has."""
    script = f"sleep 2; true distill-owner-{os.getpid()}"
    results: list[tuple[int, str]] = []
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        runner = threading.Thread(
            target=lambda: results.append(run(mnt.merged, script, uid=1000, gid=1000))
        )
        runner.start()
        try:
            pid = _find_process(["/bin/sh", "-c", script], time.monotonic() + 5)
            assert pid is not None
            assert os.stat(f"/proc/{pid}").st_uid == 2**31 + 1000
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
            try:
                assert os.fstat(fd).st_ino != os.stat("/proc/self/ns/user").st_ino
                owner = fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4))
            finally:
                os.close(fd)
        finally:
            runner.join()
    assert struct.unpack("I", owner) == (2**31 + 1000,)
    assert results == [(0, "")]


@pytest.mark.parametrize(
    "identity",
    [{"uid": -1}, {"gid": 2**32 - 1}, {"groups": (-5,)}, {"groups": (2**32,)}],
    ids=["uid", "gid", "negative-group", "huge-group"],
)
def test_invalid_ids_are_rejected_before_anything_runs(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    with pytest.raises(SandboxError):
        run(tmp_path, "true", **identity)
    assert list(tmp_path.iterdir()) == []


def test_setup_failure_and_missing_command_as_non_root(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        out = io.BytesIO()
        spec = RunSpec(argv=["/bin/no-such-tool"], env=dict(PATH), uid=1000, gid=1000)
        assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 127
        with as_container_root(sandbox_ids()):  # the view only takes container ids
            (mnt.merged / "root-only").mkdir(mode=0o700)
        with pytest.raises(SandboxError, match="could not set up.*Permission denied"):
            run(mnt.merged, "true", cwd="/root-only", uid=1000, gid=1000)
        with as_container_root(sandbox_ids()):
            (mnt.merged / "etc/hosts").mkdir(parents=True)   # bubblewrap binds a file there
        with pytest.raises(SandboxError, match="could not set up the sandbox: bwrap: "):
            run(mnt.merged, "true", uid=1000, gid=1000)


def test_sandbox_ids_are_the_upper_half_of_the_id_space() -> None:
    ids = sandbox_range("         0          0 4294967295\n")
    assert ids == IdRange(2**31, 2**31 - 1)
    assert ids.map_lines("uid") == ids.map_lines("gid") == b"0 2147483648 2147483647\n"
    assert ids.shifted
    assert ids.contains(0) and ids.contains(65534) and not ids.contains(2**31 - 1)


def test_rootless_sandbox_ids_are_the_namespaces_own_one_map_line_per_extent() -> None:
    # unshare --map-auto --map-root-user: the user, then its subordinate range
    uid_map = "         0       1001          1\n         1     100000      65535\n"
    gid_map = "0 1001 1\n1 200000 70000\n"
    ids = sandbox_range(uid_map, gid_map)
    assert not ids.shifted and ids.base == 0 and ids.count == 65536
    # the kernel refuses a child map line that spans two of the parent's extents
    assert ids.map_lines("uid") == b"0 0 1\n1 1 65535\n"
    assert ids.map_lines("gid") == b"0 0 1\n1 1 65535\n"   # clipped to the uids' count
    single = sandbox_range("0 1001 1\n", "0 1001 1\n")
    assert single.count == 1 and single.map_lines() == b"0 0 1\n"
    assert single.contains(0) and not single.contains(1)
    # a namespace that does not map id 0 cannot run a RUN as root
    with pytest.raises(SandboxError, match="does not map id 0"):
        sandbox_range("1 100000 65536\n", "0 1 1\n")


def test_bwrap_argv_for_a_non_root_user() -> None:
    spec = RunSpec(argv=["id"], uid=1000, gid=50, groups=(7,))
    argv = " ".join(bwrap_argv("bwrap", Path("/r"), spec, 3, userns_fds=(5, 6)))
    assert "--unshare-user --uid 1000 --gid 50 --userns-block-fd 5 --info-fd 6" in argv
    assert "--cap-add" not in argv and "--cap-drop ALL" in argv
