"""ADD's source side: classifying sources, archive detection, confined unpacking."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from distill.builder.add import (
    AddOptions,
    GitRef,
    is_git,
    is_url,
    parse_git_ref,
    url_filename,
    wants_unpack,
)
from distill.builder.archive import extract_archive_into, is_archive
from distill.errors import ContextError

# -- classification ---------------------------------------------------------------


@pytest.mark.parametrize("src, expected", [
    ("http://example.com/a.tar.gz", True),
    ("https://example.com/", True),
    ("HTTP://example.com", False),
    ("ftp://example.com/x", False),
    ("example.com/x", False),
    ("./http://x", False),
])
def test_is_url(src: str, expected: bool) -> None:
    assert is_url(src) is expected


@pytest.mark.parametrize("src, expected", [
    ("git@github.com:moby/buildkit.git", True),
    ("git@github.com:moby/buildkit", True),
    ("git@github.com:moby/buildkit.git#v0.12.0:docs", True),
    ("git://github.com/moby/buildkit", True),
    ("ssh://git@github.com/moby/buildkit.git", True),
    ("https://github.com/moby/buildkit.git", True),
    ("https://github.com/moby/buildkit.git#main", True),
    ("https://github.com/moby/buildkit.git#v1.0:sub/dir", True),
    ("http://example.com/repo.git", True),
    ("https://github.com/moby/buildkit", False),           # no .git: an HTTP download
    ("https://example.com/archive.tar.gz", False),
    ("github.com/moby/buildkit", False),                  # indistinguishable from local
    ("./repo.git", False),
    ("../repo.git", False),
    ("repo.git", False),
    ("src/", False),
    ("ftp://example.com/repo.git", False),
    ("file:///srv/repo.git", False),                      # BuildKit: no file:// git
])
def test_is_git(src: str, expected: bool) -> None:
    assert is_git(src) is expected


@pytest.mark.parametrize("src, expected", [
    ("https://h/r.git?ref=v1&subdir=docs", GitRef("https://h/r.git", "v1", "docs")),
    ("https://h/r.git?tag=v1", GitRef("https://h/r.git", "refs/tags/v1", None)),
    ("https://h/r.git?branch=dev", GitRef("https://h/r.git", "refs/heads/dev", None)),
    ("https://h/r.git?branch=refs/heads/dev", GitRef("https://h/r.git", "refs/heads/dev", None)),
    ("https://h/r.git?commit=abc123", GitRef("https://h/r.git", None, None, checksum="abc123")),
    ("https://h/r.git?ref=main&checksum=abc123",
     GitRef("https://h/r.git", "main", None, checksum="abc123")),
    ("https://h/r.git?keep-git-dir", GitRef("https://h/r.git", None, None, keep_git_dir=True)),
    ("https://h/r.git?keep-git-dir=false",
     GitRef("https://h/r.git", None, None, keep_git_dir=False)),
    ("https://h/r.git?submodules=0", GitRef("https://h/r.git", None, None, submodules=False)),
    ("https://h/r.git?mtime=checkout", GitRef("https://h/r.git", None, None)),
    ("https://h/r.git#v1?x", GitRef("https://h/r.git", "v1?x", None)),   # '?' after '#'
    ("https://h/r.git?ref=v1#v1:sub", GitRef("https://h/r.git", "v1", "sub")),  # agree
    ("git@github.com:o/r.git?ref=v2", GitRef("git@github.com:o/r.git", "v2", None)),
])
def test_parse_git_ref_query(src: str, expected: GitRef) -> None:
    """The ``?key=value`` form of BuildKit's dfgitutil.ParseGitRef."""
    assert parse_git_ref(src) == expected


@pytest.mark.parametrize("src, message", [
    ("https://h/r.git?ref=", "has no value"),
    ("https://h/r.git?ref=a&ref=b", "multiple values"),
    ("https://h/r.git?ref=a#b", "ref conflicts"),
    ("https://h/r.git?subdir=a#:b", "subdir conflicts"),
    ("https://h/r.git?tag=v1&branch=main", "branch conflicts with tag"),
    ("https://h/r.git?bogus=1", "unexpected query"),
    ("https://h/r.git?keep-git-dir=maybe", "invalid keep-git-dir"),
    ("https://h/r.git?mtime=never", "invalid mtime"),
    ("https://h/r.git?mtime=commit", "not supported"),
    ("https://h/r.git?fetch-by-commit", "not supported"),
])
def test_parse_git_ref_query_errors(src: str, message: str) -> None:
    with pytest.raises(ContextError, match=message):
        parse_git_ref(src)
    assert is_git(src)          # still a git source: the fetch reports the error


def test_parse_git_ref_fragment() -> None:
    ref = parse_git_ref("https://github.com/moby/buildkit.git#v0.12.0:docs/dev")
    assert ref is not None
    assert (ref.remote, ref.ref, ref.subdir) == ("https://github.com/moby/buildkit.git",
                                                 "v0.12.0", "docs/dev")
    ref = parse_git_ref("git@github.com:o/r.git")
    assert ref is not None and ref.ref is None and ref.subdir is None
    assert parse_git_ref("file:///srv/r#v1", allow_file=True) == GitRef("file:///srv/r", "v1", None)
    ref = parse_git_ref("git@github.com:o/r.git#:sub")
    assert ref is not None and ref.ref is None and ref.subdir == "sub"


def test_url_filename() -> None:
    assert url_filename("https://example.com/dl/file.tar.gz?x=1#frag") == "file.tar.gz"
    assert url_filename("https://example.com/") == "__unnamed__"
    assert url_filename("https://example.com") == "__unnamed__"
    assert url_filename("https://example.com/a%20b") == "a b"


def test_wants_unpack_defaults() -> None:
    assert wants_unpack(AddOptions(), remote=False)
    assert not wants_unpack(AddOptions(), remote=True)
    assert wants_unpack(AddOptions(unpack=True), remote=True)
    assert not wants_unpack(AddOptions(unpack=False), remote=False)


# -- archives -----------------------------------------------------------------------


def _member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE,
            linkname: str = "", mode: int = 0o644, uid: int = 0, gid: int = 0,
            mtime: int = 1_600_000_000) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    if data is not None:
        info.size = len(data)
    return info, data


def _tar(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


COMPRESS = {
    "tar": lambda b: b,
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_is_archive_by_content(tmp_path: Path, kind: str) -> None:
    data = COMPRESS[kind](_tar(_member("a.txt", b"hi")))
    assert is_archive(_write(tmp_path, "no-extension", data))


def test_not_archives(tmp_path: Path) -> None:
    assert not is_archive(_write(tmp_path, "plain.tar", b"hello world\n" * 100))
    assert not is_archive(_write(tmp_path, "fake.tar.gz", gzip.compress(b"not a tar" * 200)))
    assert not is_archive(_write(tmp_path, "empty.tar", b""))
    assert not is_archive(_write(tmp_path, "zeros.tar", b"\0" * 10240))   # no first header
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hi")
    assert not is_archive(_write(tmp_path, "x.zip", buf.getvalue()))
    (tmp_path / "dir").mkdir()
    assert not is_archive(tmp_path / "dir")
    os.symlink("x.zip", tmp_path / "link")
    assert not is_archive(tmp_path / "link")
    assert not is_archive(tmp_path / "missing")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (lchown)")


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst", "tar"])
def test_extract_compressed(tmp_path: Path, root: Path, kind: str) -> None:
    _needs_root()
    data = COMPRESS[kind](_tar(
        _member("top", kind=tarfile.DIRTYPE, mode=0o750, uid=5, gid=6, mtime=1_000_000_000),
        _member("top/file", b"content", mode=0o4755, uid=1000, gid=1001),
        _member("top/link", kind=tarfile.SYMTYPE, linkname="file"),
        _member("top/hard", kind=tarfile.LNKTYPE, linkname="top/file", mode=0o4755,
                uid=1000, gid=1001),
    ))
    archive = _write(tmp_path, "a.bin", data)
    extract_archive_into(archive, root, "/opt/x", None)
    top = root / "opt/x/top"
    assert (root / "opt").stat().st_mode & 0o7777 == 0o755
    st = top.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 5, 6)
    assert st.st_mtime == 1_000_000_000
    f = (top / "file").stat()
    assert (top / "file").read_bytes() == b"content"
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid) == (0o4755, 1000, 1001)
    assert f.st_mtime == 1_600_000_000
    assert os.readlink(top / "link") == "file"
    assert (top / "hard").stat().st_ino == f.st_ino


def test_extract_chown_only_for_created_dest(tmp_path: Path, root: Path) -> None:
    _needs_root()
    archive = _write(tmp_path, "a.tgz", gzip.compress(_tar(_member("f", b"x", uid=7, gid=8))))
    extract_archive_into(archive, root, "/new/dir", (1000, 1000))
    assert (root / "new").stat().st_uid == 1000
    assert (root / "new/dir").stat().st_uid == 1000
    assert (root / "new/dir/f").stat().st_uid == 7        # the archive's owner is kept


def test_extract_replaces_and_merges(tmp_path: Path, root: Path) -> None:
    _needs_root()
    (root / "d/sub").mkdir(parents=True)
    (root / "d/keep").write_text("kept")
    (root / "d/file").write_text("old")
    (root / "d/was-dir").mkdir()
    (root / "d/was-dir/inner").write_text("x")
    os.symlink("/etc", root / "d/was-link")
    archive = _write(tmp_path, "a.tar", _tar(
        _member("sub", kind=tarfile.DIRTYPE, mode=0o700),
        _member("sub/new", b"n"),
        _member("file", b"new"),
        _member("was-dir", b"now a file"),
        _member("was-link", b"now a file too"),
    ))
    extract_archive_into(archive, root, "/d", None)
    assert (root / "d/keep").read_text() == "kept"
    assert (root / "d/file").read_text() == "new"
    assert (root / "d/sub/new").read_text() == "n"
    assert (root / "d/was-dir").read_text() == "now a file"
    assert not (root / "d/was-link").is_symlink()
    assert (root / "d/was-link").read_text() == "now a file too"


def test_extract_missing_parents_created(tmp_path: Path, root: Path) -> None:
    _needs_root()
    archive = _write(tmp_path, "a.tar", _tar(_member("a/b/c", b"deep")))
    extract_archive_into(archive, root, "/", None)
    assert (root / "a/b/c").read_text() == "deep"
    assert stat.S_IMODE((root / "a/b").stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/../evil", "./../evil"])
def test_extract_rejects_dotdot(tmp_path: Path, root: Path, name: str) -> None:
    archive = _write(tmp_path, "a.tar", _tar(_member(name, b"x")))
    (root / "dest").mkdir()
    with pytest.raises(ContextError, match="outside"):
        extract_archive_into(archive, root, "/dest", None)
    assert not (root / "evil").exists()
    assert not (tmp_path / "evil").exists()


def test_extract_absolute_names_made_relative(tmp_path: Path, root: Path) -> None:
    _needs_root()
    archive = _write(tmp_path, "a.tar", _tar(_member("/etc/passwd", b"inside")))
    extract_archive_into(archive, root, "/dest", None)
    assert (root / "dest/etc/passwd").read_text() == "inside"


def test_extract_symlink_escape_rejected(tmp_path: Path, root: Path) -> None:
    archive = _write(tmp_path, "a.tar", _tar(
        _member("ln", kind=tarfile.SYMTYPE, linkname="../../../../outside"),
        _member("ln/pwned", b"x"),
    ))
    with pytest.raises(ContextError, match="outside"):
        extract_archive_into(archive, root, "/dest", None)
    assert not (tmp_path / "outside").exists()


def test_extract_hardlink_escape_rejected(tmp_path: Path, root: Path) -> None:
    archive = _write(tmp_path, "a.tar", _tar(
        _member("h", kind=tarfile.LNKTYPE, linkname="../../secret")))
    with pytest.raises(ContextError, match="outside"):
        extract_archive_into(archive, root, "/dest", None)


def test_extract_absolute_symlink_then_write_is_contained(tmp_path: Path, root: Path) -> None:
    """A member symlink to /, then a member under it: written to DEST (as if chrooted at
    DEST), never to the rootfs' or the host's /."""
    _needs_root()
    archive = _write(tmp_path, "a.tar", _tar(
        _member("abs", kind=tarfile.SYMTYPE, linkname="/"),
        _member("abs/rootfile", b"y"),
    ))
    extract_archive_into(archive, root, "/dest", None)
    assert os.readlink(root / "dest/abs") == "/"
    assert (root / "dest/rootfile").read_text() == "y"
    assert not (root / "rootfile").exists()


def test_extract_symlink_to_host_dir_then_write_fails_inside(tmp_path: Path,
                                                            root: Path) -> None:
    """A symlink to a host directory that does not exist inside DEST: the write through
    it fails (as under BuildKit's chroot), and nothing reaches the host directory."""
    _needs_root()
    outside = tmp_path / "host-etc"
    outside.mkdir()
    archive = _write(tmp_path, "a.tar", _tar(
        _member("etc", kind=tarfile.SYMTYPE, linkname=str(outside)),
        _member("etc/pwned", b"x"),
    ))
    with pytest.raises(ContextError):
        extract_archive_into(archive, root, "/dest", None)
    assert list(outside.iterdir()) == []


def test_extract_through_rootfs_symlink_stays_in_root(tmp_path: Path, root: Path) -> None:
    """A symlink already in the rootfs (a base layer) pointing out of it is followed
    inside the root, never on the host."""
    _needs_root()
    outside = tmp_path / "host"
    outside.mkdir()
    os.symlink(str(outside), root / "opt")
    archive = _write(tmp_path, "a.tar", _tar(_member("f", b"x")))
    extract_archive_into(archive, root, "/opt", None)
    assert not (outside / "f").exists()
    assert (root / str(outside).lstrip("/") / "f").read_text() == "x"


def test_extract_onto_file_is_error(tmp_path: Path, root: Path) -> None:
    (root / "file").write_text("x")
    archive = _write(tmp_path, "a.tar", _tar(_member("f", b"x")))
    with pytest.raises(ContextError):
        extract_archive_into(archive, root, "/file", None)


def test_extract_corrupt_archive(tmp_path: Path, root: Path) -> None:
    data = gzip.compress(_tar(_member("f", os.urandom(100_000))))
    archive = _write(tmp_path, "a.tgz", data[:len(data) // 2])
    assert is_archive(archive)
    with pytest.raises(ContextError, match="a.tgz"):
        extract_archive_into(archive, root, "/dest", None)


@pytest.mark.parametrize("src", ["https://h/r.git#--upload-pack=x", "https://h/r.git?ref=-x",
                                 "git@h:o/r.git#-b"])
def test_git_refs_may_not_look_like_options(src: str) -> None:
    """BuildKit's validateGitRef: a ref starting with '-' would be an option to git."""
    with pytest.raises(ContextError, match="invalid git ref"):
        parse_git_ref(src)
