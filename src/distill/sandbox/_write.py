"""Turn an overlayfs upper directory into an OCI layer tar.

The upper directory already is the diff of a step (habit 7: no walk of the
lower snapshots). Only the overlayfs conventions need translating back to
OCI ones: a 0:0 character device is a ``.wh.NAME`` whiteout entry, an opaque
directory gets a ``.wh..wh..opq`` entry after it.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from distill.sandbox._extract import (
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
)

#: Overlayfs (kernel >= 6.7) may also mark whiteouts with this xattr on an empty file.
_XWHITEOUT_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")


def _emitted_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs worth shipping: not overlayfs' own, not host security labels."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found: dict[str, bytes] = {}
    for name in sorted(names):
        if name.startswith(("trusted.", "user.overlay.")) or name == "security.selinux":
            continue
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return found


def _has_xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _is_whiteout(path: str, st: os.stat_result) -> bool:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == 0
        and any(_has_xattr(path, x) is not None for x in _XWHITEOUT_XATTRS)
    )


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """(absolute path, relative name) of everything under root, sorted, depth first."""
    stack: list[Iterator[str]] = [iter(sorted(os.listdir(root)))]
    prefixes = [""]
    while stack:
        name = next(stack[-1], None)
        if name is None:
            stack.pop()
            prefixes.pop()
            continue
        rel = prefixes[-1] + name
        path = os.path.join(root, rel)
        yield path, rel
        if stat.S_ISDIR(os.lstat(path).st_mode):
            stack.append(iter(sorted(os.listdir(path))))
            prefixes.append(rel + "/")


class _LayerWriter:
    """Builds tar headers for one upper directory."""

    def __init__(self, tar: tarfile.TarFile, mtime_clamp: int | None) -> None:
        self.tar = tar
        self.clamp = mtime_clamp
        self.inodes: dict[tuple[int, int], str] = {}

    def header(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        mtime = st.st_mtime_ns // 1_000_000_000
        info.mtime = min(mtime, self.clamp) if self.clamp is not None else mtime
        return info

    def add(self, path: str, rel: str) -> None:
        st = os.lstat(path)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        if _is_whiteout(path, st):
            parent, _, base = rel.rpartition("/")
            name = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base
            self.tar.addfile(self.header(name, st, tarfile.REGTYPE))
            return
        if stat.S_ISDIR(mode):
            self._with_xattrs(path, self.header(rel, st, tarfile.DIRTYPE))
            if _has_xattr(path, OPAQUE_XATTR) == b"y":
                self.tar.addfile(self.header(f"{rel}/{OPAQUE_MARKER}", st, tarfile.REGTYPE))
            return
        if st.st_nlink > 1:
            first = self.inodes.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                info = self.header(rel, st, tarfile.LNKTYPE)
                info.linkname = first
                self.tar.addfile(info)
                return
        if stat.S_ISREG(mode):
            self._regular(path, rel)
        elif stat.S_ISLNK(mode):
            info = self.header(rel, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(path)
            self._with_xattrs(path, info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self.header(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._with_xattrs(path, info)
        elif stat.S_ISFIFO(mode):
            self._with_xattrs(path, self.header(rel, st, tarfile.FIFOTYPE))

    def _regular(self, path: str, rel: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            info = self.header(rel, st, tarfile.REGTYPE)
            info.size = st.st_size
            self._with_xattrs(path, info, src)

    def _with_xattrs(self, path: str, info: tarfile.TarInfo, src: BinaryIO | None = None) -> None:
        # tarfile re-encodes surrogate-escaped values byte for byte (hdrcharset=BINARY).
        info.pax_headers = {
            XATTR_PAX_PREFIX + name: value.decode("utf-8", "surrogateescape")
            for name, value in _emitted_xattrs(path).items()
        }
        self.tar.addfile(info, src)


def write_layer_from_upper(upper: Path, out: BinaryIO, *, mtime_clamp: int | None = None) -> None:
    """Write the overlay upper directory ``upper`` as an uncompressed OCI layer tar to ``out``.

    Deterministic (sorted walk, PAX format, empty uname/gname, whole-second
    mtimes) and streaming (``out`` is only written to, never sought). Entry
    names are relative, without "./"; directories end with "/". Whiteouts
    and opaque directories are translated to OCI form; ``trusted.*`` xattrs
    are dropped, others (e.g. ``security.capability``) become
    ``SCHILY.xattr.*`` records. Files sharing an inode become hardlinks to the
    first path written; sockets are skipped. ``mtime_clamp`` caps every mtime.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _LayerWriter(tar, mtime_clamp)
        for path, rel in _walk(os.fspath(upper)):
            writer.add(path, rel)
