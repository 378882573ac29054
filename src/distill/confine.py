"""Path resolution confined to a root, as if chrooted: '..' and symlinks never leave it.

Every path distill reads from a build context or writes into a root filesystem
goes through here (build steps and the sandbox alike), so neither '../' nor a symlink
(in the context or in a base layer) can reach outside. A leaf module: it imports only
``distill.errors``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from distill.errors import DistillError

MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str, *, follow_final: bool = True) -> Path:
    """Return the host path that ``path`` names inside ``root``.

    Symlinks are followed with ``root`` as '/', absolute or relative; '..' stops
    at ``root``. Missing components are fine (the result may not exist).
    """
    pending = [c for c in path.split("/") if c not in ("", ".")]
    pending.reverse()
    done: list[str] = []
    hops = 0
    while pending:
        comp = pending.pop()
        if comp == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, comp)
        is_last = not pending
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            done.append(comp)
            continue
        except OSError as e:       # a name too long, an unreadable directory...
            raise DistillError(f"cannot resolve {path!r}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode) and (follow_final or not is_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise DistillError(f"too many levels of symbolic links resolving {path!r}")
            target = os.readlink(candidate)
            parts = [c for c in target.split("/") if c not in ("", ".")]
            if target.startswith("/"):
                done = []
            pending.extend(reversed(parts))
            continue
        done.append(comp)
    return Path(root, *done)


def existing_prefix(root: Path, path: str) -> tuple[Path, list[str]]:
    """``path`` resolved inside ``root``, split into the host path of its deepest existing
    directory entry and the components still missing below it (empty if all exist)."""
    resolved = resolve_in_root(root, path)
    parts = resolved.relative_to(root).parts
    current = Path(root)
    for i, part in enumerate(parts):
        if not os.path.lexists(current / part):
            return current, list(parts[i:])
        current = current / part
    return current, []


def relative_inside(root: Path, host_path: Path) -> str:
    """The '/'-rooted path of host_path inside root (host_path must be inside)."""
    rel = os.path.relpath(host_path, root)
    return "/" if rel == "." else "/" + rel
