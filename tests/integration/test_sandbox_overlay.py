"""overlay_mount with real overlayfs mounts (needs root).

These tests mount in the pytest process's own mount namespace (they do not
call ensure_private_mount_namespace, which would change the test runner for
every other test); overlay_mount always unmounts on exit, which the tests
check.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from distill.errors import SandboxError
from distill.sandbox import overlay_mount

pytestmark = pytest.mark.integration


def mounted(path: Path) -> bool:
    target = str(path).encode()
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4] == target for line in f)


def layer(root: Path, name: str, files: dict[str, bytes]) -> Path:
    path = root / name
    path.mkdir()
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


def test_no_lowers_is_an_empty_root(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([], scratch) as mnt:
        assert mounted(mnt.merged)
        assert list(mnt.merged.iterdir()) == []
        (mnt.merged / "hello").write_bytes(b"hi")
        assert stat.S_IMODE(os.stat(mnt.merged).st_mode) == 0o755
    assert not mounted(scratch / "merged")
    assert [p.name for p in scratch.iterdir()] == ["upper"]
    assert (scratch / "upper/hello").read_bytes() == b"hi"


def test_one_lower_copy_up(tmp_path: Path) -> None:
    lower = layer(tmp_path, "l1", {"etc/conf": b"old", "keep": b"k"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([lower], scratch) as mnt:
        assert mnt.upper == scratch / "upper"
        assert (mnt.merged / "keep").read_bytes() == b"k"
        (mnt.merged / "etc/conf").write_bytes(b"new")
    assert (lower / "etc/conf").read_bytes() == b"old"
    assert (scratch / "upper/etc/conf").read_bytes() == b"new"
    assert not (scratch / "upper/keep").exists()


def test_two_lowers_top_most_first(tmp_path: Path) -> None:
    bottom = layer(tmp_path, "bottom", {"shared": b"bottom", "only-bottom": b"b", "dir/old": b"o"})
    top = layer(tmp_path, "top", {"shared": b"top", "dir/new": b"n"})
    os.mknod(top / "only-bottom", stat.S_IFCHR, os.makedev(0, 0))  # whiteout
    os.setxattr(top / "dir", "trusted.overlay.opaque", b"y")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([top, bottom], scratch) as mnt:
        assert (mnt.merged / "shared").read_bytes() == b"top"
        assert not (mnt.merged / "only-bottom").exists()
        assert sorted(os.listdir(mnt.merged / "dir")) == ["new"]
    assert list((scratch / "upper").iterdir()) == []


def test_many_lowers_with_long_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 100)
    deep.mkdir()
    lowers = [
        layer(deep, f"layer-{i:03d}-" + "y" * 40, {f"f{i}": str(i).encode()}) for i in range(60)
    ]
    assert len(":".join(map(str, lowers))) > 4096
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount(lowers, scratch) as mnt:
        assert sorted(os.listdir(mnt.merged)) == sorted(f"f{i}" for i in range(60))
        assert (mnt.merged / "f0").read_bytes() == b"0"
    assert not mounted(scratch / "merged")
    assert [p.name for p in scratch.iterdir()] == ["upper"]


def test_separators_in_paths_are_escaped(tmp_path: Path) -> None:
    lower = layer(tmp_path, "sha256:a,b", {"f": b"ok"})
    scratch = tmp_path / "scr:at,ch"
    scratch.mkdir()
    with overlay_mount([lower], scratch) as mnt:
        assert (mnt.merged / "f").read_bytes() == b"ok"
        (mnt.merged / "g").write_bytes(b"g")
    assert (scratch / "upper/g").exists()


def test_unmounts_when_the_body_raises(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(RuntimeError), overlay_mount([], scratch) as mnt:
        (mnt.merged / "f").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not mounted(scratch / "merged")
    assert (scratch / "upper/f").exists()


def test_busy_mount_is_detached_lazily(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([], scratch) as mnt:
        held = open(mnt.merged / "held", "wb")  # noqa: SIM115 - held across the unmount
        cwd_fd = os.open(mnt.merged, os.O_RDONLY)
    try:
        assert not mounted(scratch / "merged")
        held.write(b"still works")
    finally:
        held.close()
        os.close(cwd_fd)
    assert [p.name for p in scratch.iterdir()] == ["upper"]


def test_scratch_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"")
    with pytest.raises(SandboxError, match="not empty"), overlay_mount([], tmp_path):
        pass


def test_copied_up_but_unchanged_dirs_are_pruned_on_exit(tmp_path: Path) -> None:
    bottom = layer(tmp_path, "bottom", {"gone/f": b"", "same/f": b"", "touched/f": b""})
    top = layer(tmp_path, "top", {"deep/a/b/f": b"", "opq/f": b""})
    (bottom / "gone/f").unlink()
    os.mknod(top / "gone", stat.S_IFCHR, os.makedev(0, 0))  # whiteout over bottom's dir
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([top, bottom], scratch) as mnt:
        m = mnt.merged
        for rel in ("same", "deep/a/b", "touched"):
            times = os.lstat(m / rel)
            (m / rel / "tmp").write_bytes(b"")
            (m / rel / "tmp").unlink()
            if rel != "touched":
                os.utime(m / rel, ns=(times.st_atime_ns, times.st_mtime_ns))
        os.mkdir(m / "gone")  # a new dir where a whiteout was: not a copy-up
        shutil.copystat(bottom / "gone", m / "gone")
        os.mkdir(m / "fresh")
        (m / "opq/f").unlink()
        os.rmdir(m / "opq")
        os.mkdir(m / "opq")  # overlayfs marks it opaque
        shutil.copystat(top / "opq", m / "opq")
    remaining = sorted(str(p.relative_to(scratch / "upper")) for p in mnt.upper.rglob("*"))
    assert remaining == ["fresh", "gone", "opq", "touched"]
