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

from distill import confine
from distill.confine import existing_prefix
from distill.errors import SandboxError


def _existing_dir(root: Path, path: str) -> tuple[Path, list[str]]:
    """``existing_prefix``, which must end at a directory (else a SandboxError)."""
    base, missing = existing_prefix(root, path)
    if missing and not os.path.isdir(base):
        raise SandboxError(f"cannot create {path} in the root filesystem: "
                           f"/{base.relative_to(root)} is not a directory")
    return base, missing


def make_dirs(root: Path, path: str) -> None:
    """``mkdir -p`` of absolute ``path`` inside ``root``: 0755 directories, owned by
    whoever distill runs as (root in the image's view)."""
    try:
        confine.make_dirs(root, path)
    except NotADirectoryError as e:
        raise SandboxError(f"cannot create {path} in the root filesystem: "
                           f"{e.filename} is not a directory") from None
    except OSError as e:
        raise SandboxError(f"cannot create {path} in the root filesystem: "
                           f"{e.strerror}") from None


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class _Stub:
    """A mount point made for a run: ``name`` in the directory open as ``dir_fd``."""

    dir_fd: int
    name: str
    ino: int


@dataclass
class _Parent:
    """An existing directory that received stubs (open as ``fd``), with its times over
    the run."""

    fd: int
    before: tuple[int, int]
    after_setup: tuple[int, int] = (0, 0)
    created: list[_Stub] = field(default_factory=list)


def _times(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_atime_ns, st.st_mtime_ns


@dataclass
class MountStubs:
    """Mount points created in a rootfs for a run, removed again afterwards.

    bubblewrap needs ``/dev``, ``/proc``, ``/etc/resolv.conf``... to exist to
    mount over them; created in an overlay they would land in the step's
    layer. Like BuildKit, create what is missing, and after the run remove
    what is still an empty stub, restoring the parent directory's times when
    the run itself did not touch that directory.

    Everything after the run is done through descriptors opened while the stubs
    were made, never by path: the run may have renamed a stub's parent and put a
    symlink to a host directory in its place, and a path would now lead there.
    A descriptor stays the directory it was, inside the rootfs, so the worst a run
    can do is have its own empty files removed from its own layer.
    """

    root: Path
    parents: dict[Path, _Parent] = field(default_factory=dict)
    _fds: list[int] = field(default_factory=list)

    def _open(self, name: str | Path, dir_fd: int | None = None) -> int:
        fd = os.open(name, _DIR, dir_fd=dir_fd)
        self._fds.append(fd)
        return fd

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
            fd = self._open(base)
            parent = self.parents[base] = _Parent(fd, _times(fd))
        dir_fd = parent.fd
        for i, part in enumerate(missing):
            if i < len(missing) - 1 or is_dir:
                os.mkdir(part, 0o755, dir_fd=dir_fd)
                fd = self._open(part, dir_fd)
                os.fchmod(fd, 0o755)  # not subject to the umask
                parent.created.append(_Stub(dir_fd, part, os.fstat(fd).st_ino))
                dir_fd = fd
            else:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(part, flags, 0o644, dir_fd=dir_fd)
                try:
                    os.fchmod(fd, 0o644)
                    parent.created.append(_Stub(dir_fd, part, os.fstat(fd).st_ino))
                finally:
                    os.close(fd)
        return resolved

    def setup_done(self) -> None:
        """Remember parent times once all stubs exist (i.e. just before the run)."""
        for parent in self.parents.values():
            parent.after_setup = _times(parent.fd)

    def remove(self) -> None:
        """Remove stubs that are still empty; restore parent times where appropriate."""
        try:
            self._remove()
        finally:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()

    def _remove(self) -> None:
        after_run = {id(parent): _times(parent.fd) for parent in self.parents.values()}
        created = [(stub, parent) for parent in self.parents.values()
                   for stub in parent.created]
        kept = {id(parent) for stub, parent in reversed(created) if not _remove_if_empty(stub)}
        for parent in self.parents.values():
            if id(parent) in kept:
                continue
            untouched = after_run[id(parent)][1] == parent.after_setup[1]
            with contextlib.suppress(OSError):
                os.utime(parent.fd, ns=parent.before if untouched else after_run[id(parent)])


def _remove_if_empty(stub: _Stub) -> bool:
    """Remove an empty stub; False if it was filled (or replaced) by the run."""
    try:
        st = os.stat(stub.name, dir_fd=stub.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if st.st_ino != stub.ino:
        return False  # the run's own file now
    try:
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(stub.name, dir_fd=stub.dir_fd)
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(stub.name, dir_fd=stub.dir_fd)
        else:
            return False
    except OSError:
        return False
    return True
