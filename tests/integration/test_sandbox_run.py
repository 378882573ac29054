"""RUN steps end to end: overlay over a busybox rootfs, bubblewrap, layer tar.

Needs root, overlayfs, bwrap and /bin/busybox (Debian busybox-static).
Scratch directories live under a 0711 directory so uid 1000 can reach them.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.errors import SandboxError
from distill.sandbox import RunSpec, overlay_mount, run_in_rootfs, write_layer_from_upper
from distill.sandbox.run import SandboxMount, sandbox_ids
from tests.helpers.bases import install_busybox

pytestmark = pytest.mark.integration

PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture
def base() -> Iterator[Path]:
    """A 0711 working directory holding ``rootfs/``: busybox and its applet links."""
    work = Path(tempfile.mkdtemp(prefix="distill-sandbox-"))
    os.chmod(work, 0o711)
    rootfs = work / "rootfs"
    install_busybox(rootfs)
    (rootfs / "tmp").mkdir(mode=0o1777)
    os.chmod(rootfs / "tmp", 0o1777)
    try:
        yield work
    finally:
        shutil.rmtree(work)


def scratch(work: Path, name: str = "scratch") -> Path:
    path = work / name
    path.mkdir()
    return path


def run(rootfs: Path, script: str, **kwargs: object) -> tuple[int, bytes]:
    out = io.BytesIO()
    spec = RunSpec(argv=["/bin/sh", "-c", script], env=dict(PATH), cwd="/", **kwargs)  # type: ignore[arg-type]
    return run_in_rootfs(rootfs, spec, stdout=out, idmapped=True), out.getvalue()


def layer_members(upper: Path) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    write_layer_from_upper(upper, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_env_cwd_and_exit_code(base: Path) -> None:
    os.environ["DISTILL_HOST_ONLY"] = "leak"
    try:
        with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
            out = io.BytesIO()
            spec = RunSpec(
                argv=[
                    "/bin/sh",
                    "-c",
                    ('echo "$GREETING"; pwd; echo "[$DISTILL_HOST_ONLY]"; '
                     "hostname; echo oops >&2; exit 7"),
                ],
                env={**PATH, "GREETING": "hello world"},
                cwd="/work/dir",
                hostname="builder",
            )
            assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 7
    finally:
        del os.environ["DISTILL_HOST_ONLY"]
    assert out.getvalue().decode().splitlines() == [
        "hello world",
        "/work/dir",
        "[]",
        "builder",
        "oops",
    ]
    created = os.lstat(base / "scratch/upper/work/dir")
    assert stat.S_IMODE(created.st_mode) == 0o755 and created.st_uid == 0


def test_output_defaults_to_our_stdout(base: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        spec = RunSpec(argv=["/bin/echo", "to fd 1"], env=dict(PATH), cwd="/")
        assert run_in_rootfs(mnt.merged, spec, idmapped=True) == 0
    assert "to fd 1" in capfd.readouterr().out


def test_missing_command_is_exit_127_not_a_sandbox_error(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        out = io.BytesIO()
        spec = RunSpec(argv=["/bin/no-such-tool"], env=dict(PATH), cwd="/")
        assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 127
    assert b"no-such-tool" in out.getvalue()


def test_setup_failure_is_a_sandbox_error(base: Path) -> None:
    (base / "rootfs/etc/hosts").mkdir(parents=True)   # bubblewrap binds a file there
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        failure = pytest.raises(SandboxError, match="could not set up the sandbox: bwrap: ")
        with failure:
            run(mnt.merged, "true")


def test_killed_by_signal(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        assert run(mnt.merged, "kill -9 $$")[0] == 128 + 9


def test_network_none_and_root_capabilities(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /proc/net/dev", network="none")
        assert code == 0
        interfaces = {
            line.split(":")[0].strip() for line in out.decode().splitlines() if ":" in line
        }
        assert interfaces == {"lo"}
        code, out = run(mnt.merged, "id -u; mkdir /m; mount -t tmpfs none /m")
        assert code != 0  # no CAP_SYS_ADMIN: Docker's default capability set
        assert out.decode().splitlines()[0] == "0"


def test_run_diff_becomes_a_layer(base: Path) -> None:
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "etc/motd").write_bytes(b"hi\n")
    (rootfs / "etc/keep").write_bytes(b"same\n")
    (rootfs / "var/old").mkdir(parents=True)
    (rootfs / "var/old/a").write_bytes(b"a")
    (rootfs / "var/old/b").write_bytes(b"b")
    script = (
        "echo created > /created && echo more >> /etc/motd && rm /etc/keep && "
        "rm -rf /var/old && mkdir /var/old && echo fresh > /var/old/c && "
        "ln /created /var/hardlink"
    )
    with overlay_mount([rootfs], scratch(base), sandbox=sandbox_ids()) as mnt:
        assert run(mnt.merged, script)[0] == 0
        members = layer_members(mnt.upper)
    assert sorted(members) == [
        "created",
        "etc",
        "etc/.wh.keep",
        "etc/motd",
        "var",
        "var/hardlink",
        "var/old",
        "var/old/.wh..wh..opq",
        "var/old/c",
    ]
    assert members["etc/.wh.keep"].isreg() and members["etc/.wh.keep"].size == 0
    assert members["var/hardlink"].islnk() and members["var/hardlink"].linkname == "created"
    assert members["etc/motd"].size == len(b"hi\nmore\n")


def test_uid_1000_owns_what_it_creates(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        out = io.BytesIO()
        spec = RunSpec(
            argv=["/bin/sh", "-c", "id -u; id -g; echo x > /tmp/mine; touch /root-owned"],
            env=dict(PATH),
            cwd="/tmp",
            uid=1000,
            gid=1000,
        )
        assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 1  # "/" is root's: touch fails
        lines = out.getvalue().decode().splitlines()
        assert lines[:2] == ["1000", "1000"]
        mine = os.lstat(mnt.upper / "tmp/mine")
        assert (mine.st_uid, mine.st_gid) == (1000, 1000)
        assert not (mnt.upper / "root-owned").exists()


def test_uid_1000_needs_no_traversable_path(tmp_path: Path, base: Path) -> None:
    closed = tmp_path / "closed"  # pytest's tmp dirs are 0700: uid 1000 cannot enter
    closed.mkdir(mode=0o700)
    with overlay_mount([base / "rootfs"], scratch(closed), sandbox=sandbox_ids()) as mnt:
        out = io.BytesIO()
        spec = RunSpec(
            argv=["/bin/touch", "/tmp/mine"], env=dict(PATH), cwd="/", uid=1000, gid=1000
        )
        assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 0, out.getvalue()
        assert os.lstat(mnt.upper / "tmp/mine").st_uid == 1000
    assert not [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if "distill-run-" in line
    ]


def test_mount_stubs_do_not_leak_into_the_upper_dir(base: Path) -> None:
    rootfs = base / "rootfs"
    assert not any((rootfs / p).exists() for p in ("dev", "proc", "etc"))
    with overlay_mount([rootfs], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /etc/resolv.conf >/dev/null && ls /proc/self >/dev/null")
        assert code == 0, out
        assert list(mnt.upper.iterdir()) == []


def test_stub_parent_keeps_its_mtime(base: Path) -> None:
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "dev").mkdir()
    (rootfs / "proc").mkdir()
    os.utime(rootfs / "etc", (1_600_000_000, 1_600_000_000))
    with overlay_mount([rootfs], scratch(base), sandbox=sandbox_ids()) as mnt:
        assert run(mnt.merged, "true")[0] == 0
        # /etc was copied up to hold the stubs; it is empty and unchanged...
        assert [p.name for p in mnt.upper.iterdir()] == ["etc"]
        assert list((mnt.upper / "etc").iterdir()) == []
        assert os.lstat(mnt.upper / "etc").st_mtime == 1_600_000_000
    # ...so overlay_mount prunes it on exit: a no-op RUN leaves an empty diff.
    assert list(mnt.upper.iterdir()) == []


def test_stub_directory_the_run_wrote_into_is_kept(base: Path) -> None:
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        assert run(mnt.merged, "mkdir -p /etc/app && echo cfg > /etc/app/conf")[0] == 0
        assert sorted(str(p.relative_to(mnt.upper)) for p in mnt.upper.rglob("*")) == [
            "etc",
            "etc/app",
            "etc/app/conf",
        ]


def test_symlinked_etc_stays_inside_the_rootfs(base: Path) -> None:
    rootfs = base / "rootfs"
    outside = base / "outside"
    outside.mkdir()
    os.symlink(str(outside), rootfs / "etc")  # absolute: must resolve inside the rootfs
    with overlay_mount([rootfs], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /etc/resolv.conf")
        # The stub went to <rootfs>/tmp/.../outside/resolv.conf; only the copied-up /tmp remains.
        assert sorted(str(p.relative_to(mnt.upper)) for p in mnt.upper.rglob("*")) == ["tmp"]
    assert list(mnt.upper.iterdir()) == []
    assert (code, out) == (0, Path("/etc/resolv.conf").read_bytes())
    assert list(outside.iterdir()) == []


def test_relative_resolv_conf_symlink_is_followed_in_the_rootfs(base: Path) -> None:
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir()
    os.symlink("../run/systemd/resolve/stub-resolv.conf", rootfs / "etc/resolv.conf")
    with overlay_mount([rootfs], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /etc/resolv.conf")
        assert sorted(str(p.relative_to(mnt.upper)) for p in mnt.upper.rglob("*")) == ["etc"]
    assert list(mnt.upper.iterdir()) == []
    assert (code, out) == (0, Path("/etc/resolv.conf").read_bytes())


def test_private_network_with_a_root_only_tmpdir(base: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """pasta runs unprivileged: its pid file may not live under a root-only $TMPDIR."""
    private = tmp_path / "private-tmp"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
        code, out = run(mnt.merged, "cat /proc/net/dev")
    assert code == 0, out
    interfaces = {line.split(b":")[0].strip() for line in out.splitlines() if b":" in line}
    assert len(interfaces) == 2 and b"lo" in interfaces  # lo and pasta's tap device


def _raise(*args: object) -> None:
    raise SandboxError("failed (as the test has it)")


def _failing(*args: object) -> Iterator[None]:
    _raise()
    yield


@pytest.mark.parametrize("where", ["maps", "network"])
def test_a_failed_setup_leaves_no_process_behind(base: Path, monkeypatch: pytest.MonkeyPatch,
                                                 where: str) -> None:
    """Something of ours fails between bubblewrap's start and the command's (writing the
    id maps, attaching the network): distill kills bubblewrap, and the sandbox's child,
    waiting for bubblewrap on an eventfd or on --block-fd, must die with it rather than
    wait forever or run the command with no one left to stop it."""
    from contextlib import contextmanager

    from distill.sandbox import _network, _userns

    if where == "maps":
        monkeypatch.setattr(_userns, "write_maps", _raise)
    else:
        monkeypatch.setattr(_network, "attached", contextmanager(_failing))
    marks = Path(tempfile.mkdtemp(prefix="distill-marks-"))
    os.chmod(marks, 0o777)
    tag = f"failed-setup-{os.getpid()}-{where}"
    try:
        with overlay_mount([base / "rootfs"], scratch(base), sandbox=sandbox_ids()) as mnt:
            spec = RunSpec(argv=["/bin/sh", "-c", f"touch /marks/ran # {tag}"],
                           env=dict(PATH), mounts=[SandboxMount("bind", "/marks", marks)])
            with pytest.raises(SandboxError, match="as the test has it"):
                run_in_rootfs(mnt.merged, spec, stdout=io.BytesIO(), idmapped=True)
        # every process of the sandbox carries the tag in its argv: once none is left, the
        # command either ran (and left its mark) or never will
        deadline = time.monotonic() + 10
        while _processes_with(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(tag) == [], "processes of the failed RUN are still alive"
        assert list(marks.iterdir()) == [], "the RUN ran after its build gave up on it"
    finally:
        shutil.rmtree(marks)


def _processes_with(word: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if word.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
