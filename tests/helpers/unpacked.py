"""Questions about an unpacked root filesystem (say, umoci's bundle rootfs), answered as
the image's own processes would see it: symlinks are followed inside the root, never out.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_ELF = b"\x7fELF"


def resolve_in(root: Path, path: str, *, max_links: int = 40) -> Path | None:
    """Where ``path`` (absolute inside the image) leads, as if chrooted into ``root``.

    Returns the host path of the final, non-symlink entry, or None when some component
    does not exist (a dangling link) or there are too many links.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        host = root.joinpath(*current, part)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current.append(part)
    return root.joinpath(*current)


def is_elf(path: Path) -> bool:
    """A regular file that starts with the ELF magic."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(4) == _ELF
    except FileNotFoundError:
        return False


def entries(root: Path) -> dict[str, os.stat_result]:
    """Every path below ``root`` (relative, '/'-separated) with its lstat; the root excluded."""
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            found[os.path.relpath(full, root)] = os.lstat(full)
    return found
