"""ADD's local archives: what counts as one (BuildKit's isArchivePath), and unpacking one
into a directory of the root filesystem, confined to it (no member, symlink or hardlink
leads out; a missing parent is made as moby makes it)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, cast

from distill.confine import make_dirs, open_in_root, resolve_in_root
from distill.errors import ContextError, DistillError
from distill.limits import member_time_ns, open_tar
from distill.sandbox import rootless, xattrs

_MAGIC = (
    (b"\x1f\x8b\x08", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
)


def _decompressed(f: BinaryIO) -> BinaryIO:
    head = f.read(6)
    f.seek(0)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if kind == "gz":
                return cast(BinaryIO, gzip.GzipFile(fileobj=f, mode="rb"))
            if kind == "bz2":
                return cast(BinaryIO, bz2.BZ2File(f))
            if kind == "xz":
                return cast(BinaryIO, lzma.LZMAFile(f))
            import zstandard
            return zstandard.ZstdDecompressor().stream_reader(f)
    return f


def _open_regular(path: Path) -> BinaryIO:
    """``path`` (a host path already resolved inside its root) opened for reading if it
    is a regular file: never through a symlink swapped in since, never a FIFO or device."""
    fd = open_in_root(path.parent, path.name, follow=False, what=str(path))
    if fd is None:
        raise ContextError(f"{path.name}: no such file")
    return os.fdopen(fd, "rb")


def is_archive(path: Path) -> bool:
    """BuildKit's isArchivePath: a regular file whose (decompressed) content starts with a
    readable tar header. Zip files are not archives."""
    try:
        with _open_regular(path) as f, _decompressed(f) as stream, \
                tarfile.open(fileobj=stream, mode="r|") as tar:
            return tar.next() is not None
    except (DistillError, OSError, EOFError, tarfile.TarError, lzma.LZMAError, ValueError):
        return False
    except Exception as exc:  # zstandard.ZstdError has no common base we can name
        if type(exc).__module__.startswith("zstandard"):
            return False
        raise


def _escapes(*parts: str) -> bool:
    """Go's filepath.Join(dest, parts...) then Rel: does the lexical path leave dest?"""
    depth = 0
    for part in parts:
        for comp in part.split("/"):
            if comp in ("", "."):
                continue
            depth = depth - 1 if comp == ".." else depth + 1
            if depth < 0:
                return True
    return False


def _mkdir_all(root: Path, rel: str, owner: tuple[int, int], mode: int) -> Path:
    """mkdir -p of rel inside root (symlinks followed as if chrooted at root), as Go's
    MkdirAll there: missing directories are created with ``owner`` and ``mode``."""
    try:
        return make_dirs(root, rel, mode=mode, owner=owner)
    except NotADirectoryError as e:
        raise ContextError(f"cannot create directory {e.filename}: not a directory") from None


def extract_archive_into(archive: Path, dest_root: Path, dest: str,
                         owner: tuple[int, int] | None) -> None:
    """Unpack the tar ``archive`` into the directory ``dest`` (absolute, inside
    ``dest_root``), creating it (owned by ``owner`` or 0:0, mode 0755) when missing."""
    base = _mkdir_all(dest_root, dest, owner or (0, 0), 0o755)
    dir_times: list[tuple[Path, int, int]] = []
    try:
        with _open_regular(archive) as f, _decompressed(f) as stream, \
                open_tar(stream, f"archive {archive.name}", raw=f) as tar:
            for member in tar:
                _extract_member(tar, member, base, dir_times)
    except (tarfile.TarError, EOFError, lzma.LZMAError, OSError) as exc:
        raise ContextError(f"failed to unpack {archive.name}: {exc}") from exc
    for path, atime, mtime in reversed(dir_times):
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, base: Path,
                    dir_times: list[tuple[Path, int, int]]) -> None:
    name = member.name
    if _escapes(name):
        raise ContextError(f"archive member {name!r} is outside of the destination")
    rel = posixpath.normpath("/" + name).lstrip("/")
    if rel in ("", "."):
        return                                   # the destination itself: kept as it is
    parent_rel = posixpath.dirname(rel)
    if parent_rel and not os.path.lexists(resolve_in_root(base, parent_rel, follow_final=False)):
        _mkdir_all(base, parent_rel, (0, 0), 0o755)      # as moby: only a missing parent
    parent = resolve_in_root(base, parent_rel)
    if not parent.is_dir():
        raise ContextError(f"cannot extract {name!r}: its parent is not a directory")
    path = parent / posixpath.basename(rel)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None and not (stat.S_ISDIR(existing.st_mode) and member.isdir()):
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(path)
            # its directories get no times at the end: a later member may put a symlink
            # where they were, and a path through it would lead out of the root
            dir_times[:] = [d for d in dir_times if d[0] != path and path not in d[0].parents]
        else:
            os.unlink(path)

    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
    elif member.isreg():
        src = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, 1 << 20)
    elif member.issym():
        if _escapes(posixpath.dirname(rel), member.linkname):
            raise ContextError(f"archive member {name!r} links to {member.linkname!r}, "
                               "outside of the destination")
        os.symlink(member.linkname, path)
    elif member.islnk():
        if _escapes(member.linkname):
            raise ContextError(f"archive member {name!r} is a hardlink to "
                               f"{member.linkname!r}, outside of the destination")
        target = resolve_in_root(base, member.linkname, follow_final=False)
        if not os.path.lexists(target):
            raise ContextError(f"archive member {name!r} is a hardlink to missing "
                               f"{member.linkname!r}")
        os.link(target, path, follow_symlinks=False)
    elif (member.ischr() or member.isblk()) and rootless.active():
        return  # a user namespace may not make device nodes: skipped, as moby does there
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise ContextError(f"archive member {name!r}: unhandled tar entry type "
                           f"{member.type!r}")

    rootless.chown(path, member.uid, member.gid, f"archive member {name!r}")
    xattrs.apply(path, xattrs.of_member(member), follow=False)
    # what was made, not what the member says: a hardlink to a symlink is a symlink, and
    # chmod would follow it out of the root (a symlink has no mode of its own on Linux)
    if not stat.S_ISLNK(os.lstat(path).st_mode):
        os.chmod(path, member.mode & 0o7777)
    mtime = member_time_ns(member)
    atime = max(member_time_ns(member, "atime"), mtime)
    if member.isdir():
        dir_times.append((path, atime, mtime))
    else:
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)
