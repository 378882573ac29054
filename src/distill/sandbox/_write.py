"""Turn an overlayfs upper directory into an OCI layer tar.

The upper directory already is the diff of a step (habit 7: no walk of the
lower snapshots). Only the overlayfs conventions need translating back to
OCI ones: a 0:0 character device is a ``.wh.NAME`` whiteout entry, an opaque
directory gets a ``.wh..wh..opq`` entry after it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypedDict

from distill.errors import SandboxError
from distill.sandbox import xattrs
from distill.sandbox._overlayfs import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    is_opaque,
    is_whiteout,
    opaque_xattr,
)
from distill.sandbox._tarstream import BLK, CHR, DIR, FIFO, LNK, REG, SYM, TarStream

PATH_MAX = 4096

def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(absolute path, relative name, lstat) of everything under root, sorted, depth first."""
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
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue    # listed but hidden: a whiteout seen through a merged overlay
        yield path, rel, st
        if stat.S_ISDIR(st.st_mode):
            stack.append(iter(sorted(os.listdir(path))))
            prefixes.append(rel + "/")


class _Fields(TypedDict):
    mode: int
    uid: int
    gid: int
    mtime: int
    mtime_ns: int


class _LayerWriter:
    """Writes the tar entries of one upper directory."""

    def __init__(self, tar: TarStream, mtime_clamp: int | None) -> None:
        self.tar = tar
        self.clamp_ns = None if mtime_clamp is None else mtime_clamp * 1_000_000_000
        self.inodes: dict[tuple[int, int], str] = {}

    def fields(self, path: str, st: os.stat_result) -> _Fields:
        """Mode, owner and time of an entry. The time keeps its nanoseconds (a PAX
        record), so that what later steps saw is what the image holds. A clamp applies
        to the directory too, not only to the tar: the upper directory becomes the
        layer's snapshot, and later steps (a ``uv sync`` recording file times) must see
        the times the image will have."""
        ns = st.st_mtime_ns
        if self.clamp_ns is not None and ns > self.clamp_ns:
            ns = self.clamp_ns
            os.utime(path, ns=(min(st.st_atime_ns, ns), ns), follow_symlinks=False)
        return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                "mtime": ns // 1_000_000_000, "mtime_ns": ns}

    def add(self, path: str, rel: str, st: os.stat_result) -> None:
        """Write the entry at ``path``; the upper directory, which becomes the layer's
        snapshot, loses what the layer does not hold (sockets, attributes an image does
        not carry): a later build whose layer hashes the same reuses that snapshot."""
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            os.unlink(path)   # skipped, as Docker does
            return
        if is_whiteout(path, st):
            parent, _, base = rel.rpartition("/")
            name = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base
            self.tar.add(name, REG, **self.fields(path, st))
            return
        xattrs.scrub(path, opaque_xattr())
        if stat.S_ISDIR(mode):
            self.tar.add(rel + "/", DIR, xattrs=xattrs.of_path(path), **self.fields(path, st))
            if is_opaque(path):
                self.tar.add(f"{rel}/{OPAQUE_MARKER}", REG, **self.fields(path, st))
            return
        if st.st_nlink > 1:
            first = self.inodes.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                self.tar.add(rel, LNK, linkname=first, **self.fields(path, st))
                return
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                self.tar.add_file(rel, fd, st.st_size, xattrs=xattrs.of_path(path),
                                  **self.fields(path, st))
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            self.tar.add(rel, SYM, linkname=os.readlink(path), xattrs=xattrs.of_path(path),
                         **self.fields(path, st))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.tar.add(rel, CHR if stat.S_ISCHR(mode) else BLK,
                         devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                         xattrs=xattrs.of_path(path), **self.fields(path, st))
        elif stat.S_ISFIFO(mode):
            self.tar.add(rel, FIFO, xattrs=xattrs.of_path(path), **self.fields(path, st))


def write_layer_from_upper(upper: Path, out: BinaryIO, *, mtime_clamp: int | None = None) -> None:
    """Write the overlay upper directory ``upper`` as an uncompressed OCI layer tar to ``out``.

    Deterministic (sorted walk, ustar/PAX, empty uname/gname; mtimes with their
    nanoseconds as a PAX record when not whole seconds) and streaming (``out`` is only written to, never sought). Entry
    names are relative, without "./"; directories end with "/". Whiteouts
    and opaque directories are translated to OCI form; the xattrs an image
    carries (:mod:`distill.sandbox.xattrs`: ``security.capability``, not overlayfs'
    own) become ``SCHILY.xattr.*`` records. Files sharing an inode become hardlinks to the
    first path written; sockets are skipped. ``mtime_clamp`` caps every mtime, in
    the tar and in ``upper`` itself.
    """
    tar = TarStream(out)
    writer = _LayerWriter(tar, mtime_clamp)
    try:
        for path, rel, st in _walk(os.fspath(upper)):
            writer.add(path, rel, st)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        name = os.path.relpath(str(exc.filename), upper) if exc.filename else "?"
        raise SandboxError(f"the step left a path too long to store ({len(name)} bytes; "
                           f"with the store's own path, over the kernel's {PATH_MAX}): "
                           f"/{name[:120]}...",
                           hint="keep paths in the image under 4096 bytes") from None
    tar.close()
