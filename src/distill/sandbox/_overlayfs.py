"""How overlayfs and OCI layers mark what a layer removes, in one place.

OCI layers say it with names: ``.wh.NAME`` removes NAME, ``.wh..wh..opq`` in a directory
hides everything below it. An overlayfs upper or lower directory says it with files: a
0:0 character device (or, since Linux 6.7, an empty file with an ``overlay.whiteout``
xattr) removes its name, ``trusted.overlay.opaque=y`` makes a directory opaque (rootless,
``user.overlay.opaque=y``: overlayfs mounted with ``userxattr`` reads only ``user.*``, and
only those a user namespace may set)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from distill.sandbox import rootless

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
ROOTLESS_OPAQUE_XATTR = "user.overlay.opaque"
#: the xattrs that mark a whiteout made as an empty file (kernel >= 6.7)
_XWHITEOUT_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")


def _xattr(path: str | Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def is_whiteout(path: str | Path, st: os.stat_result) -> bool:
    """Whether the entry at ``path`` (whose lstat is ``st``) is an overlayfs whiteout."""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0
            and any(_xattr(path, x) is not None for x in _XWHITEOUT_XATTRS))


def opaque_xattr() -> str:
    """The xattr that marks an opaque directory for this process's overlays (only that
    one: overlayfs ignores the other flavour, and a RUN may set ``user.*`` itself)."""
    return ROOTLESS_OPAQUE_XATTR if rootless.active() else OPAQUE_XATTR


def is_opaque(path: str | Path) -> bool:
    """Whether the directory at ``path`` is marked opaque."""
    return _xattr(path, opaque_xattr()) == b"y"
