"""Path work inside a root filesystem seen from the host, never leaving it.

Symlinks in a root filesystem are resolved as if it were "/" (like a chroot
would), so an image's ``/etc -> /host/etc`` symlink cannot make distill,
running as root on the host, create files outside the image.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from distill.confine import existing_prefix
from distill.errors import SandboxError


def _mkdir(path: Path) -> None:
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)  # not subject to the umask


def _existing_dir(root: Path, path: str) -> tuple[Path, list[str]]:
    """``existing_prefix``, which must end at a directory (else a SandboxError)."""
    base, missing = existing_prefix(root, path)
    if missing and not os.path.isdir(base):
        raise SandboxError(f"cannot create {path} in the root filesystem: "
                           f"/{base.relative_to(root)} is not a directory")
    return base, missing


def make_dirs(root: Path, path: str) -> None:
    """``mkdir -p`` of absolute ``path`` inside ``root``: 0755 directories owned by root."""
    base, missing = _existing_dir(root, path)
    for part in missing:
        base = base / part
        try:
            _mkdir(base)
        except OSError as e:
            raise SandboxError(f"cannot create {path} in the root filesystem: "
                               f"{e.strerror}") from None


@dataclass
class _Parent:
    """An existing directory that received stubs, with its times over the run."""

    path: Path
    before: tuple[int, int]
    after_setup: tuple[int, int] = (0, 0)
    created: list[Path] = field(default_factory=list)


def _times(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns


@dataclass
class MountStubs:
    """Mount points created in a rootfs for a run, removed again afterwards.

    bubblewrap needs ``/dev``, ``/proc``, ``/etc/resolv.conf``... to exist to
    mount over them; created in an overlay they would land in the step's
    layer. Like BuildKit, create what is missing, and after the run remove
    what is still an empty stub, restoring the parent directory's times when
    the run itself did not touch that directory.
    """

    root: Path
    parents: dict[Path, _Parent] = field(default_factory=dict)

    def add(self, path: str, *, is_dir: bool) -> str:
        """Create ``path`` (and missing parents) inside the root if it is missing.

        Returns the path with every symlink resolved inside the root: the
        place to mount on, so that bubblewrap follows no symlink itself.
        """
        base, missing = _existing_dir(self.root, path)
        resolved = "/" + "/".join([*base.relative_to(self.root).parts, *missing])
        if not missing:
            return resolved
        parent = self.parents.get(base)
        if parent is None:
            parent = self.parents[base] = _Parent(base, _times(base))
        target = base
        for i, part in enumerate(missing):
            target = target / part
            if i < len(missing) - 1 or is_dir:
                _mkdir(target)
            else:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                os.close(os.open(target, flags, 0o644))
                os.chmod(target, 0o644)
            parent.created.append(target)
        return resolved

    def setup_done(self) -> None:
        """Remember parent times once all stubs exist (i.e. just before the run)."""
        for parent in self.parents.values():
            parent.after_setup = _times(parent.path)

    def remove(self) -> None:
        """Remove stubs that are still empty; restore parent times where appropriate."""
        after_run: dict[Path, tuple[int, int]] = {}
        for parent in self.parents.values():
            try:
                after_run[parent.path] = _times(parent.path)
            except OSError:
                continue
        created = [(path, parent) for parent in self.parents.values() for path in parent.created]
        kept = {parent.path for path, parent in reversed(created) if not _remove_if_empty(path)}
        for parent in self.parents.values():
            if parent.path in kept or parent.path not in after_run:
                continue
            untouched = after_run[parent.path][1] == parent.after_setup[1]
            with contextlib.suppress(OSError):
                os.utime(
                    parent.path,
                    ns=parent.before if untouched else after_run[parent.path],
                    follow_symlinks=False,
                )


def _remove_if_empty(path: Path) -> bool:
    """Remove an empty stub; False if it was filled (or replaced) by the run."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    try:
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(path)
        else:
            return False
    except OSError:
        return False
    return True
