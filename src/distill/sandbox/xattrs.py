"""Extended attributes: which ones an image carries, and how they reach a file.

One policy for every way files enter or leave a root filesystem (a layer unpacked, an
archive ADDed, an upper directory written as a layer): ``trusted.*`` (overlayfs' own
control attributes: a directory marked opaque, a redirect to another path; distill sets
only ``trusted.overlay.opaque`` itself), ``user.overlay.*`` (the same in a user-xattr
overlay) and ``security.selinux`` (the host's label) are never taken from an archive nor
shipped in a layer; everything else (``security.capability``, ``user.*``) is. Setting
one is best effort, as BuildKit's: a filesystem or kernel that does not take an
attribute skips it."""

from __future__ import annotations

import errno
import os
import tarfile
from pathlib import Path

#: PAX records that carry extended attributes (GNU tar, BuildKit, containerd)
PAX_PREFIX = "SCHILY.xattr."

#: errors that mean "this attribute cannot be set here", not "the write failed"
_SKIPPED = frozenset({errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.ERANGE, errno.E2BIG})


def carried(name: str) -> bool:
    """Whether an image carries the attribute ``name`` (never one no kernel can name: a
    hostile layer's PAX record may hold a NUL)."""
    return not name.startswith(("trusted.", "user.overlay.")) and name != "security.selinux" \
        and "\0" not in name


def of_member(member: tarfile.TarInfo) -> dict[str, bytes]:
    """The carried attributes of a tar member's PAX ``SCHILY.xattr.*`` records."""
    found: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith(PAX_PREFIX) and carried(name := key[len(PAX_PREFIX):]):
            found[name] = value.encode("utf-8", "surrogateescape")
    return found


def of_path(path: str) -> dict[str, bytes]:
    """The carried attributes of ``path`` (not following a symlink), sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found: dict[str, bytes] = {}
    for name in sorted(names):
        if not carried(name):
            continue
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return found


def scrub(path: str, keep: str) -> None:
    """Remove from ``path`` (not following a symlink) the attributes an image does not
    carry, but ``keep`` (overlayfs' opaque mark) and the SELinux label: what a RUN set
    under a name overlayfs escaped (``user.overlay.overlay.*``), which its layer does
    not hold, so that the snapshot is what the layer says."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if not carried(name) and name not in (keep, "security.selinux"):
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError:
                continue


def apply(target: int | Path, attrs: dict[str, bytes], *, follow: bool = True) -> None:
    """Set ``attrs`` on ``target`` (a descriptor or a path; symlinks followed only with
    ``follow``), skipping what cannot be set there."""
    for name, value in attrs.items():
        if not carried(name):
            continue
        try:
            os.setxattr(target, name, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in _SKIPPED:
                raise
