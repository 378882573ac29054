"""Pure parts of distill.sandbox: path resolution inside a rootfs, the bwrap
command line, exit-status parsing, spec validation. No root needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distill.confine import existing_prefix
from distill.errors import DistillError, SandboxError
from distill.sandbox import RunSpec, run_in_rootfs
from distill.sandbox._rootfs import make_dirs
from distill.sandbox.run import DEFAULT_CAPABILITIES, _exit_code, _failure, bwrap_argv


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr/lib").mkdir(parents=True)
    os.symlink("usr/lib", tmp_path / "lib")
    os.symlink("/usr", tmp_path / "abs")
    os.symlink("../../../../..", tmp_path / "up")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    return tmp_path


def test_resolve_existing_and_missing(root: Path) -> None:
    assert existing_prefix(root, "/usr/lib") == (root / "usr/lib", [])
    assert existing_prefix(root, "/usr/lib/x/y") == (root / "usr/lib", ["x", "y"])
    assert existing_prefix(root, "/") == (root, [])


def test_resolve_symlinks_stay_inside_root(root: Path) -> None:
    assert existing_prefix(root, "/lib/x") == (root / "usr/lib", ["x"])
    assert existing_prefix(root, "/abs/lib") == (root / "usr/lib", [])
    assert existing_prefix(root, "/up/etc") == (root, ["etc"])
    assert existing_prefix(root, "/../../etc") == (root, ["etc"])


def test_resolve_symlink_loop(root: Path) -> None:
    with pytest.raises(DistillError, match="symbolic links"):
        existing_prefix(root, "/loop1/x")


def test_make_dirs_follows_symlinks_inside_root(root: Path) -> None:
    make_dirs(root, "/abs/share/doc")
    assert (root / "usr/share/doc").is_dir()
    assert oct((root / "usr/share").stat().st_mode & 0o777) == "0o755"


def test_bwrap_argv() -> None:
    spec = RunSpec(
        argv=["/bin/sh", "-c", "echo hi"],
        env={"A": "1", "PATH": "/bin"},
        cwd="/src",
        network="none",
        hostname="h",
    )
    argv = bwrap_argv("/usr/bin/bwrap", Path("/r"), spec, 9, {"/proc": "/resolved/proc"})
    assert argv[:4] == ["/usr/bin/bwrap", "--bind", "/r", "/"]
    assert argv[-5:] == ["9", "--", "/bin/sh", "-c", "echo hi"]
    joined = " ".join(argv)
    assert "--dev /dev --proc /resolved/proc" in joined
    assert "--unshare-net" in argv and "--unshare-user --uid 0 --gid 0" in joined
    assert "--clearenv --setenv A 1 --setenv PATH /bin --chdir /src" in joined
    assert "--hostname h" in joined and "--die-with-parent" in argv
    assert "--new-session" in argv   # no controlling terminal, no process group of ours
    assert argv.count("--cap-add") == len(DEFAULT_CAPABILITIES)
    assert "/etc/hosts" not in argv  # bound from a descriptor (hosts_fd), never the host's
    assert "CAP_SYS_ADMIN" not in argv


def test_bwrap_argv_non_root_uses_a_user_namespace() -> None:
    spec = RunSpec(argv=["id"], env={}, cwd="/", uid=1000, gid=1001)
    argv = bwrap_argv("bwrap", Path("/r"), spec, 3)
    assert "--unshare-user --uid 1000 --gid 1001" in " ".join(argv)
    assert "--cap-add" not in argv and "--unshare-net" in argv  # a private network by default


def test_exit_code_parsing() -> None:
    status = b'{ "child-pid": 12, "mnt-namespace": 4 }\n{ "exit-code": 3 }\n'
    assert _exit_code(status) == 3
    assert _exit_code(b'{ "child-pid": 12 }\n') is None
    assert _exit_code(b"") is None


def test_failure_mapping() -> None:
    assert _failure(1, b"bwrap: execvp /x: No such file or directory\n") == 127
    assert _failure(1, b"bwrap: execvp /x: Permission denied\n") == 126
    with pytest.raises(SandboxError, match="Can't mount proc"):
        _failure(1, b"bwrap: Can't mount proc on /newroot/proc: Not a directory\n")


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec(argv=[], env={}, cwd="/"),
        RunSpec(argv=["x"], env={}, cwd="relative"),
        RunSpec(argv=["x"], env={}, cwd="/", network="bridge"),
        RunSpec(argv=["x"], env={"A=B": "1"}, cwd="/"),
    ],
    ids=["empty-argv", "relative-cwd", "network", "env-name"],
)
def test_invalid_specs_are_rejected_before_anything_runs(tmp_path: Path, spec: RunSpec) -> None:
    with pytest.raises(SandboxError):
        run_in_rootfs(tmp_path, spec)
    assert list(tmp_path.iterdir()) == []
