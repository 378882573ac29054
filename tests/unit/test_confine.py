"""distill.confine's reads inside a root (openat2 RESOLVE_IN_ROOT, and the fallback without
it), and the names distill takes from Dockerfile and URL strings (never host paths)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill import confine
from distill.builder.add import UNNAMED, url_filename
from distill.builder.copystep import heredoc_file_name
from distill.confine import NotRegularFileError, open_in_root, read_file_in_root
from distill.dockerfile.instructions import Copy
from distill.errors import ContextError, DistillError, DockerfileError, SourceLocation

SECRET = b"host secret\n"


@pytest.fixture(params=["openat2", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs with the kernel's openat2 and with the fallback (as without it)."""
    if request.param == "fallback":
        monkeypatch.setattr(confine, "_openat2_missing", True)
    yield request.param


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """tmp_path/root, a root filesystem; tmp_path/host/canary, a host file beside it."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host/canary").write_bytes(SECRET)
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    return r


def test_the_kernel_here_has_openat2(root: Path) -> None:
    assert read_file_in_root(root, "/etc/passwd", 100) is not None
    assert confine._openat2_missing is False


def test_reads_a_regular_file(mode: str, root: Path) -> None:
    assert read_file_in_root(root, "/etc/passwd", 100) == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file_in_root(root, "etc/../etc/./passwd", 100) == b"root:x:0:0::/root:/bin/sh\n"


@pytest.mark.parametrize("path", ["/etc/group", "/nowhere/passwd", "/etc/passwd/x"])
def test_missing_is_none(mode: str, root: Path, path: str) -> None:
    assert read_file_in_root(root, path, 100) is None


@pytest.mark.parametrize("form", ["absolute", "climbing", "deep"])
def test_symlinks_out_of_the_root_stay_inside(mode: str, root: Path, form: str) -> None:
    canary = root.parent / "host/canary"
    link, inside = {
        "absolute": (str(canary), str(canary).lstrip("/")),
        "climbing": ("../../host/canary", "host/canary"),        # from /etc: stops at /
        "deep": ("../" * 12 + str(canary).lstrip("/"), str(canary).lstrip("/")),
    }[form]
    os.symlink(link, root / "etc/group")
    assert read_file_in_root(root, "/etc/group", 100) is None   # nothing there inside
    (root / inside).parent.mkdir(parents=True)
    (root / inside).write_bytes(b"inside\n")                  # the link's target inside
    assert read_file_in_root(root, "/etc/group", 100) == b"inside\n"
    assert canary.read_bytes() == SECRET


def test_directory_symlink_out_of_the_root_stays_inside(mode: str, root: Path) -> None:
    os.symlink(str(root.parent / "host"), root / "h")
    assert read_file_in_root(root, "/h/canary", 100) is None
    os.symlink("/etc", root / "e")
    assert read_file_in_root(root, "/e/passwd", 100) == b"root:x:0:0::/root:/bin/sh\n"


def test_magic_links_lead_nowhere(mode: str, root: Path) -> None:
    os.symlink("/proc/self/root" + str(root.parent / "host/canary"), root / "etc/group")
    assert read_file_in_root(root, "/etc/group", 100) is None


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 5)), "a character device"),
    (lambda p: os.mknod(p, stat.S_IFBLK | 0o600, os.makedev(7, 0)), "a block device"),
    (lambda p: os.mkdir(p), "a directory"),
], ids=["fifo", "dev-zero", "block", "dir"])
def test_only_regular_files(mode: str, root: Path, make, kind: str) -> None:
    make(root / "etc/group")
    with pytest.raises(NotRegularFileError) as info:
        read_file_in_root(root, "/etc/group", 100, what="the image's /etc/group")
    assert info.value.message == f"the image's /etc/group is not a regular file: it is {kind}"


def test_symlink_to_a_device_inside_is_refused(mode: str, root: Path) -> None:
    os.mknod(root / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    os.symlink("/zero", root / "etc/group")
    with pytest.raises(NotRegularFileError, match="character device"):
        read_file_in_root(root, "/etc/group", 100)


def test_no_follow_refuses_a_final_symlink(mode: str, root: Path) -> None:
    os.symlink("passwd", root / "etc/group")
    assert read_file_in_root(root, "/etc/group", 100) == b"root:x:0:0::/root:/bin/sh\n"
    with pytest.raises(NotRegularFileError, match="symbolic link"):
        read_file_in_root(root, "/etc/group", 100, follow=False)


def test_size_cap(mode: str, root: Path) -> None:
    assert read_file_in_root(root, "/etc/passwd", 26) is not None
    with pytest.raises(DistillError, match=r"^/etc/passwd is too large: more than 25 bytes$"):
        read_file_in_root(root, "/etc/passwd", 25)


def test_symlink_loop_and_nul(mode: str, root: Path) -> None:
    os.symlink("loop", root / "loop")
    with pytest.raises(DistillError, match="too many levels of symbolic links"):
        read_file_in_root(root, "/loop", 100)
    with pytest.raises(DistillError, match="NUL"):
        read_file_in_root(root, "/etc/passwd\0/x", 100)


def test_open_in_root_gives_a_readable_descriptor(mode: str, root: Path) -> None:
    fd = open_in_root(root, "/etc/passwd")
    assert fd is not None
    try:
        assert os.read(fd, 4) == b"root"
        assert os.get_inheritable(fd) is False
    finally:
        os.close(fd)


# -- names from Dockerfiles and URLs ------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("EOF", "EOF"), ("/x", "x"), ("./x", "x"), ("../../x", "x"), ("a/../x", "x"),
    ("a/b", None), ("/abs/canary", None), ("..", None), (".", None), ("/", None),
    ("x\0y", None),
])
def test_heredoc_file_name(name: str, expected: str | None) -> None:
    inst = Copy(SourceLocation("Dockerfile", 2, 2, "COPY <<x /"), "COPY <<x /", (), "/")
    if expected is not None:
        assert heredoc_file_name(name, inst, "COPY", "how") == expected
        return
    with pytest.raises(DockerfileError) as e:
        heredoc_file_name(name, inst, "COPY", "a heredoc names a file")
    assert e.value.message == f"invalid heredoc name for COPY: {name!r}"
    assert e.value.hint == "a heredoc names a file: one path component"
    assert e.value.location == inst.location


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/dl/file.tar.gz?x=1#frag", "file.tar.gz"),
    ("https://example.com/dl/dir/", "dir"),              # Go's path.Base drops the slash
    ("https://example.com/", UNNAMED),
    ("https://example.com", UNNAMED),
    ("https://example.com/%2F", UNNAMED),
    ("https://example.com/%2E", UNNAMED),
    ("https://example.com/a%20b", "a b"),
    ("https://example.com/%2Fetc%2Fpasswd", "passwd"),   # decoded, then the last segment
    ("https://example.com/x%2F..%2F..%2Fcanary", "canary"),
    ("https://example.com/bad%zzescape", UNNAMED),      # Go's url.Parse refuses it
])
def test_url_filename(url: str, expected: str) -> None:
    assert url_filename(url) == expected


@pytest.mark.parametrize("url", ["http://h/%2E%2E", "http://h/x/..", "http://h/x/../",
                                 "http://h/a%2F..%2F%2E%2E%2F", "http://h/a%00b"])
def test_url_filename_naming_no_file(url: str) -> None:
    with pytest.raises(ContextError, match="names no file"):
        url_filename(url)


def test_a_link_swapped_during_resolution_is_a_clean_error(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """lstat saw a symlink, readlink finds a directory (a concurrent rename): no OSError."""
    from distill import confine
    from distill.errors import DistillError
    (tmp_path / "link").symlink_to("/elsewhere")

    def swapped(path: object) -> str:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(confine.os, "readlink", swapped)
    with pytest.raises(DistillError, match="changed while it was being resolved"):
        confine.resolve_in_root(tmp_path, "/link/x")


def test_walk_is_os_walk_without_recursion(tmp_path: Path) -> None:
    """confine.walk lists what os.walk lists, in the same order, prunable the same way;
    and it walks a tree deeper than the recursion limit, where Python 3.11's os.walk
    dies (the hostile corpus's deep context)."""
    import os
    import sys

    from distill.confine import walk

    for rel in ("a/b/c", "a/d", "e"):
        (tmp_path / "t" / rel).mkdir(parents=True)
    (tmp_path / "t" / "a" / "f").write_text("f")
    (tmp_path / "t" / "link").symlink_to("a")          # listed as a directory, not entered
    top = tmp_path / "t"
    mine = [(p, sorted(d), sorted(f)) for p, d, f in walk(top)]
    theirs = [(p, sorted(d), sorted(f)) for p, d, f in os.walk(top)]
    assert sorted(mine) == sorted(theirs)
    pruned = []
    for path, dirs, _ in walk(top):
        pruned.append(os.path.relpath(path, top))
        dirs[:] = [d for d in dirs if d != "a"]
    assert sorted(pruned) == [".", "e"]
    deep = tmp_path / "deep"
    deep.mkdir()
    depth = sys.getrecursionlimit() + 100
    cwd = os.getcwd()
    try:                                    # level by level, with short relative paths
        os.chdir(deep)
        for _ in range(depth):
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(cwd)
    levels = sum(1 for _ in walk(deep))
    assert levels == depth + 1
