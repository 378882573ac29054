"""Unpack an OCI layer tar into an overlayfs lower directory.

OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` turns into a 0:0
character device ``NAME``, and ``.wh..wh..opq`` marks its directory opaque
with ``trusted.overlay.opaque=y``. Nothing is ever written through a symlink,
and no member may leave the destination.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from distill.errors import ImageError
from distill.limits import ArchiveLimits, member_time_ns, open_tar
from distill.sandbox import rootless, xattrs
from distill.sandbox._overlayfs import OPAQUE_MARKER, WHITEOUT_PREFIX, opaque_xattr

_CHUNK = 1 << 20

#: Directories whose mode and mtime are applied after all members.
_Dirs = dict[Path, tarfile.TarInfo]


def _parts(name: str, what: str) -> list[str]:
    """Normalise a member name into path components; reject any '..'."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer {what} {name!r} escapes the layer root ('..')")
    return parts


#: A directory a layer does not list but needs (the parent of one of its entries): 0755,
#: root's, and dated 1970 like an entry without a time, so that unpacking the same layer
#: twice gives the same tree (the time of unpacking made outputs differ).
_IMPLICIT_DIR = tarfile.TarInfo()
_IMPLICIT_DIR.type = tarfile.DIRTYPE
_IMPLICIT_DIR.mode = 0o755


def _walk_parents(dest: Path, parts: list[str], name: str, *, create: bool,
                  dirs: _Dirs | None = None) -> Path:
    """Return dest/parts, checking every component is a real directory (lstat).

    Missing components are created as 0755 root directories when ``create`` (and given
    their time last, with the layer's directories, in ``dirs``); a symlink or
    non-directory in the way raises ImageError.
    """
    path = dest
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise ImageError(f"layer entry {name!r}: {part!r} does not exist") from None
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
            if dirs is not None:
                dirs[path] = _IMPLICIT_DIR
            continue
        if stat.S_ISLNK(st.st_mode):
            raise ImageError(f"layer entry {name!r} would be written through symlink {part!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise ImageError(f"layer entry {name!r}: {part!r} is not a directory")
    return path


def _remove_existing(path: Path, dirs: _Dirs, *, keep_dir: bool) -> bool:
    """Clear ``path`` for a new entry (a later member wins); True if a directory was kept."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(path)
        for gone in [d for d in dirs if d == path or path in d.parents]:
            del dirs[gone]
    else:
        os.unlink(path)
    return False


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in nanoseconds: the mtime, read exactly (a PAX time's every digit)
    and kept within what utimensat accepts."""
    ns = member_time_ns(member, "mtime")
    return ns, ns


def _own(target: Path | int, member: tarfile.TarInfo) -> None:
    """Give ``target`` (a path, not followed, or a descriptor) the member's owner; rootless,
    an owner the user namespace has no id for is an error naming the file."""
    rootless.chown(target, member.uid, member.gid, f"layer entry {member.name!r}")


def _write_regular(path: Path, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        src = tar.extractfile(member)
        if src is not None:
            while chunk := src.read(_CHUNK):
                _write_all(fd, chunk)
        # chown clears setuid/setgid and security.capability: chown, then chmod, then xattrs.
        _own(fd, member)
        os.fchmod(fd, member.mode & 0o7777)
        xattrs.apply(fd, xattrs.of_member(member))
        os.utime(fd, ns=_times(member))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _finish_special(path: Path, member: tarfile.TarInfo) -> None:
    """Owner, mode, xattrs and mtime for devices, fifos and symlinks."""
    _own(path, member)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    xattrs.apply(path, xattrs.of_member(member), follow=False)
    os.utime(path, ns=_times(member), follow_symlinks=False)


def _whiteout(parent: Path, base: str, member: tarfile.TarInfo, dirs: _Dirs) -> None:
    real = base[len(WHITEOUT_PREFIX) :]
    if real in ("", ".", ".."):
        raise ImageError(f"layer has an invalid whiteout entry {member.name!r}")
    target = parent / real
    _remove_existing(target, dirs, keep_dir=False)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    _own(target, member)
    os.utime(target, ns=_times(member), follow_symlinks=False)


def _hardlink(dest: Path, target: Path, member: tarfile.TarInfo) -> None:
    parts = _parts(member.linkname, "hardlink target")
    if not parts:
        raise ImageError(f"layer hardlink {member.name!r} points at the layer root")
    source = _walk_parents(dest, parts[:-1], member.linkname, create=False) / parts[-1]
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise ImageError(
            f"layer hardlink {member.name!r} points at missing {member.linkname!r}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"layer hardlink {member.name!r} points at a directory")
    os.link(source, target, follow_symlinks=False)


def extract_layer(tar_stream: BinaryIO, dest: Path, what: str = "layer",
                  limits: ArchiveLimits | None = None) -> None:
    """Extract an uncompressed OCI layer tar stream into the empty directory ``dest``.

    The result is an overlayfs lower directory: whiteouts become 0:0 character
    devices, opaque markers become ``trusted.overlay.opaque=y`` (rootless:
    ``user.overlay.opaque=y``; device nodes, which a user namespace may not make, are
    skipped). Type, mode
    (with setuid/setgid/sticky), owner, mtime, hardlinks, device nodes, fifos
    and ``SCHILY.xattr.*`` xattrs (except ``trusted.*``) are preserved.
    Raises ImageError (``what`` names the layer) for names with '..', writes
    through symlinks, hardlinks leaving ``dest``, unsupported entry types and
    files that cannot be written; ArchiveLimitError past ``distill.limits``
    (sparse entries, too many entries or bytes, over-long names).
    """
    dest = Path(dest)
    dirs: _Dirs = {}
    try:
        with open_tar(tar_stream, what, limits=limits) as tar:
            for member in tar:
                _extract_member(tar, member, dest, dirs)
    except tarfile.TarError as exc:
        raise ImageError(f"{what} is not a valid tar archive: {exc}") from exc
    except OSError as exc:
        name = f" ({exc.filename})" if exc.filename else ""
        raise ImageError(f"cannot unpack {what}: {exc.strerror or exc}{name}") from exc
    # Children disturb a directory's mtime (and a read-only mode would be in
    # the way for non-root), so directories get theirs last, deepest first.
    for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        member = dirs[path]
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, ns=_times(member), follow_symlinks=False)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, dirs: _Dirs) -> None:
    parts = _parts(member.name, "entry")
    if not parts:
        return  # the layer root itself: the overlay root takes the upper dir's attributes
    parent = _walk_parents(dest, parts[:-1], member.name, create=True, dirs=dirs)
    base = parts[-1]
    if base == OPAQUE_MARKER:
        os.setxattr(parent, opaque_xattr(), b"y", follow_symlinks=False)
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # other AUFS metadata (.wh..wh.plnk, ...): meaningless here
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(parent, base, member, dirs)
        return
    target = parent / base
    kept_dir = _remove_existing(target, dirs, keep_dir=member.isdir())
    if member.isdir():
        if not kept_dir:
            os.mkdir(target, 0o700)
        _own(target, member)
        xattrs.apply(target, xattrs.of_member(member), follow=False)
        dirs[target] = member
    elif member.isreg():
        _write_regular(target, member, tar)
    elif member.islnk():
        _hardlink(dest, target, member)
    elif member.issym():
        os.symlink(member.linkname, target)
        _finish_special(target, member)
    elif (member.ischr() or member.isblk()) and rootless.active():
        return  # a user namespace may not make device nodes: skipped, as moby does there
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        _finish_special(target, member)
    elif member.isfifo():
        os.mkfifo(target, 0o600)
        _finish_special(target, member)
    else:
        raise ImageError(f"layer entry {member.name!r} has unsupported type {member.type!r}")
