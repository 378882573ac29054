"""Issue 8, finding 1: a RUN's working directory never leads out of the sandbox.

bubblewrap changes into the working directory while one of its own descriptors of the
host's /proc is still open, so ``WORKDIR /proc/self/fd/N`` once started the RUN outside
the sandbox (runc's CVE-2024-21626 class). distill resolves the working directory inside
the rootfs (symlinks as if chrooted, after RUN --mount mounts are made) and refuses one in
/proc or /dev. Each attack aims at a canary outside the build (tests/helpers/isolation.py):
the build fails with a clean error naming /proc or /dev, or the RUN runs harmlessly
inside; the canary keeps its content and its secret shows nowhere.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.isolation import (
    answer,
    assert_refused_or_harmless,
    assert_untouched,
    build,
    built,
    canary_file,
    compile_probe,
    context,
    escape_attempt,
    output,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_probe(tmp_path_factory.mktemp("probe"))


@pytest.fixture
def canary() -> Iterator[Path]:
    with canary_file() as path:
        yield path


@pytest.mark.parametrize("fd", range(3, 10))
def test_workdir_proc_self_fd_is_refused(distill: RunDistill, busybox_image: str,
                                         probe: Path, canary: Path, tmp_path: Path,
                                         fd: int) -> None:
    """WORKDIR /proc/self/fd/N (one of bubblewrap's descriptors): refused, in /proc."""
    ctx = context(tmp_path, probe, f"WORKDIR /proc/self/fd/{fd}\n" + escape_attempt(canary))
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/proc")


def test_workdir_proc_self_fd_as_nobody_is_refused(distill: RunDistill, busybox_image: str,
                                                   probe: Path, canary: Path,
                                                   tmp_path: Path) -> None:
    """The same as a non-root user (who could still have read host files through it)."""
    ctx = context(tmp_path, probe, "USER 65534\nWORKDIR /proc/self/fd/3\n"
                  + escape_attempt(canary))
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/proc")


def test_workdir_symlink_to_proc_self_fd_is_refused(distill: RunDistill, busybox_image: str,
                                                    probe: Path, canary: Path,
                                                    tmp_path: Path) -> None:
    """A symlink of the image to /proc/self/fd/3 as WORKDIR: resolved as if chrooted, it
    still lands in /proc."""
    ctx = context(tmp_path, probe, "RUN ln -s /proc/self/fd/3 /w\nWORKDIR /w\n"
                  + escape_attempt(canary))
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/proc")


@pytest.mark.parametrize("workdir", ["/dev/fd/3", "/dev/fd"])
def test_workdir_dev_fd_is_refused(distill: RunDistill, busybox_image: str, probe: Path,
                                   canary: Path, tmp_path: Path, workdir: str) -> None:
    """/dev/fd is a symlink to /proc/self/fd in the sandbox's /dev: no working directory
    may lie in /dev either."""
    ctx = context(tmp_path, probe, f"WORKDIR {workdir}\n" + escape_attempt(canary))
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/dev")


def test_workdir_through_a_bind_mounted_symlink_is_refused(
        distill: RunDistill, busybox_image: str, probe: Path, canary: Path,
        tmp_path: Path) -> None:
    """A RUN --mount=type=bind source from the context holds a symlink to /proc/self/fd/3
    that is the working directory: resolved after the mounts are made, inside the rootfs."""
    ctx = context(tmp_path, probe, "WORKDIR /m/link\n"
                  "RUN --mount=type=bind,source=bind,target=/m "
                  + escape_attempt(canary).removeprefix("RUN "))
    (ctx / "bind").mkdir()
    os.symlink("/proc/self/fd/3", ctx / "bind" / "link")
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/proc")


def test_base_image_workdir_in_proc_is_refused(distill: RunDistill, busybox_image: str,
                                               probe: Path, canary: Path,
                                               tmp_path: Path) -> None:
    """A base image's config WorkingDir is enough: the Dockerfile itself is innocent."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text(f"FROM {busybox_image}\nWORKDIR /proc/self/fd/3\n")
    tag = f"isolation-workdir-base:{uuid.uuid4().hex[:8]}"
    distill("build", "-t", tag, str(base))
    ctx = context(tmp_path, probe, escape_attempt(canary), base=tag)
    out = tmp_path / "out"
    assert_refused_or_harmless(build(distill, ctx, out=out), canary, out, "/proc")


def test_no_descriptor_of_distill_reaches_the_run(distill: RunDistill, busybox_image: str,
                                                  probe: Path, tmp_path: Path) -> None:
    """The command starts with stdin, stdout and stderr only: no descriptor of distill or
    bubblewrap (a way out of the sandbox) is inherited."""
    ctx = context(tmp_path, probe, 'RUN ["/probe", "fds"]\n')   # no shell in between
    assert answer(built(build(distill, ctx)), "fds").split() == ["0", "1", "2"]


# -- /proc and /dev moved by the image -------------------------------------------------
#
# bubblewrap mounts its /proc and /dev where the image's /proc and /dev lead; a symlink
# there moved them where a working directory, or a host file bubblewrap binds, could lead
# into them (the second review's finding C1 and A2).

def _link_tar(ctx: Path, links: dict[str, str]) -> None:
    with tarfile.open(ctx / "links.tar", "w") as tar:
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def _assert_refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, output(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and all(word in errors[-1] for word in words), proc.stderr


@pytest.mark.parametrize(("link", "target", "workdir"), [
    ("proc", "/tmp/p", "/tmp/p/self/fd/3"),
    ("dev", "/tmp/d", "/tmp/d/fd/3"),
    ("dev", "/etc/d", "/etc/d/fd/3"),
])
def test_a_moved_proc_or_dev_is_refused(distill: RunDistill, busybox_image: str, probe: Path,
                                        canary: Path, tmp_path: Path, link: str, target: str,
                                        workdir: str) -> None:
    ctx = context(tmp_path, probe, f"ADD links.tar /\nWORKDIR {workdir}\n"
                  + escape_attempt(canary))
    _link_tar(ctx, {link: target})
    out = tmp_path / "out"
    proc = build(distill, ctx, out=out)
    _assert_refused(proc, f"/{link} in the image is not a directory", target)
    assert "Dockerfile:5" in proc.stderr
    assert_untouched(canary, proc)


def test_a_base_image_with_a_moved_dev_is_refused(distill: RunDistill, busybox_image: str,
                                                  probe: Path, canary: Path,
                                                  tmp_path: Path) -> None:
    """The base alone (its /dev a symlink, its WorkingDir through it) and an innocent
    Dockerfile."""
    base = tmp_path / "base"
    base.mkdir()
    _link_tar(base, {"dev": "/etc/d"})
    (base / "Dockerfile").write_text(f"FROM {busybox_image}\nADD links.tar /\n"
                                     "WORKDIR /etc/d/fd/3\n")
    tag = f"isolation-moved-dev:{uuid.uuid4().hex[:8]}"
    distill("build", "-t", tag, str(base))
    ctx = context(tmp_path, probe, escape_attempt(canary), base=tag)
    proc = build(distill, ctx)
    _assert_refused(proc, "/dev in the image is not a directory")
    assert_untouched(canary, proc)


@pytest.mark.parametrize("through", ["/proc/self/root/oldroot", "/dev/fd/3/root/oldroot"])
def test_host_files_leading_into_proc_or_dev_are_refused(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path,
        through: str) -> None:
    """The image's /etc/hosts and /etc/resolv.conf are symlinks through /proc or /dev to
    the host: bubblewrap, binding the host's files there after mounting /proc, would
    create them on the host."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o777)
    os.chmod(victim, 0o777)
    ctx = context(tmp_path, probe, "ADD links.tar /\nRUN true\n")
    _link_tar(ctx, {"etc/hosts": f"{through}{victim}/hosts",
                    "etc/resolv.conf": f"{through}{victim}/sub/resolv.conf"})
    proc = build(distill, ctx)
    _assert_refused(proc, "cannot provide /etc/", "inside /" + through.split("/")[1])
    assert "Dockerfile:4" in proc.stderr
    assert os.listdir(victim) == []
