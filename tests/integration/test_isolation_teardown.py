"""Issue 8: what distill does after a RUN never follows a path the RUN could rewrite.

distill makes mount points ("stubs") for a RUN's mounts, for /dev, /proc and the host
files it binds, mounts on them, and after the run unmounts and removes the stubs that
are still empty. The RUN has had the rootfs to itself meanwhile: it can rename a stub's
parent and put a symlink to a host directory in its place. Everything after the run is
therefore done through descriptors taken before it; these tests leave, in a host
directory the symlinks lead to, exactly what a path-based teardown would remove (an
empty directory and an empty file with the stubs' names) and check that all of it, and
the directory's times, survive.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration


def _victim(tmp_path: Path) -> tuple[Path, tuple[int, int]]:
    """A host directory holding what a path-based teardown would delete."""
    victim = tmp_path / "victim"
    for name in ("emptydir", "dir"):
        (victim / name).mkdir(parents=True)
    (victim / "emptyfile").touch()
    (victim / "resolv.conf").touch()
    os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
    st = victim.stat()
    return victim, (st.st_atime_ns, st.st_mtime_ns)


def _assert_untouched(victim: Path, times: tuple[int, int]) -> None:
    assert sorted(os.listdir(victim)) == ["dir", "emptydir", "emptyfile", "resolv.conf"]
    assert victim.stat().st_mtime_ns == times[1]


def test_stubs_and_mounts_are_undone_through_descriptors(distill: RunDistill,
                                                         busybox_image: str,
                                                         tmp_path: Path) -> None:
    victim, times = _victim(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "secret").write_text("s3cret\n")
    swap = " && ".join(f"mv /{d} /{d}2 && ln -s {victim} /{d}" for d in "xyz")
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "RUN --mount=type=tmpfs,target=/x/emptydir --mount=type=tmpfs,target=/z/dir/sub "
        f"--mount=type=secret,id=s,target=/y/emptyfile sh -c '{swap}'\n")
    proc = distill("build", "--no-cache", "--secret", f"id=s,src={ctx / 'secret'}",
                   "--output", f"type=local,dest={tmp_path / 'out'}", str(ctx), check=False)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    _assert_untouched(victim, times)
    # the run's own renamed directories hold the stubs it saw, nothing else
    assert (tmp_path / "out" / "x").is_symlink()
    assert os.listdir(tmp_path / "out" / "x2") == []


def test_host_file_stub_parent_swapped_for_a_symlink(distill: RunDistill, busybox_image: str,
                                                     tmp_path: Path) -> None:
    """/etc/resolv.conf's and /etc/hosts' stubs, /etc too (the base has none of them, so
    /etc is the run's to rename): /etc swapped by the run."""
    victim, times = _victim(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image} AS tools\nFROM scratch\nCOPY --from=tools /bin /bin\n"
        f"RUN mv /etc /etc2 && ln -s {victim} /etc\n")
    proc = distill("build", "--no-cache", str(ctx), check=False)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    _assert_untouched(victim, times)


def test_host_files_inside_a_cache_mount_are_refused(distill: RunDistill, busybox_image: str,
                                                     tmp_path: Path) -> None:
    """bubblewrap would bind /etc/resolv.conf into a cache (shared, changed at will by
    other builds' RUNs): through a symlink there, onto the host. A clean error instead."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN --mount=type=cache,target=/etc,id=etc-cache true\n")
    proc = distill("build", "--no-cache", str(ctx), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "inside the cache mount /etc" in proc.stderr and "Dockerfile:2" in proc.stderr


def test_cache_target_resolving_to_the_root_is_refused(distill: RunDistill,
                                                       busybox_image: str,
                                                       tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN ln -s / /c\n"
        "RUN --mount=type=cache,target=/c,id=root-cache true\n")
    proc = distill("build", "--no-cache", str(ctx), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "resolves to the root directory" in proc.stderr and "Dockerfile:3" in proc.stderr
