"""Extra mounts of a RUN step (``RUN --mount``), made in the rootfs before bubblewrap starts.

distill mounts them itself, as root in its private mount namespace, on mount
points resolved inside the rootfs (symlinks followed as if chrooted); bubblewrap's
recursive bind of the rootfs then carries them into the sandbox. Sources are
therefore opened by us, never by bubblewrap running as the step's user.

Everything written under a mount point lands in the mounted file system, not in
the overlay's upper directory; mount points created for the run are removed
again when they are still empty (see :class:`~distill.sandbox._rootfs.MountStubs`),
so neither reaches the layer.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from distill.confine import relative_inside, resolve_in_root
from distill.errors import SandboxError
from distill.sandbox import _idmap, _libc
from distill.sandbox._idmap import IdRange
from distill.sandbox._rootfs import MountStubs

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32

_KINDS = ("bind", "tmpfs")


@dataclass(frozen=True)
class SandboxMount:
    """One mount inside the rootfs of a run.

    ``kind`` "bind" mounts the host file or directory ``source`` at ``target``,
    idmapped into the sandbox's id range (so root's files are container root's)
    unless ``shifted`` says the source already shows container ids (a path in an
    overlay mounted for the sandbox);
    "tmpfs" mounts a fresh tmpfs (``size`` bytes at most, 0 = the kernel's
    default; root directory ``mode``, default 1777). ``target`` is an absolute
    path inside the rootfs; a missing mount point is created for the run and
    removed afterwards. Of several mounts on one target the last wins; a mount
    inside another one's target is mounted after it.
    """

    kind: str
    target: str
    source: Path | None = None
    readonly: bool = False
    size: int = 0
    mode: int | None = None
    shifted: bool = False
    #: Other sandboxes may change the content while this one starts (a cache mount):
    #: no path bubblewrap follows may lead through it (see ``run._working_dir``).
    shared: bool = False


def validate_mounts(mounts: Sequence[SandboxMount]) -> None:
    for m in mounts:
        if m.kind not in _KINDS:
            raise SandboxError(f"unsupported mount kind {m.kind!r}")
        if not m.target.startswith("/") or "\0" in m.target:
            raise SandboxError(f"mount target {m.target!r} is not an absolute path")
        if posixpath.normpath(m.target) == "/" or posixpath.normpath(m.target) == "//":
            raise SandboxError("cannot mount over the root directory")
        if m.kind == "bind" and (m.source is None or not os.path.lexists(m.source)):
            raise SandboxError(f"bind mount source {m.source} does not exist")
        if m.size < 0 or (m.mode is not None and not 0 <= m.mode <= 0o7777):
            raise SandboxError(f"invalid tmpfs options for {m.target!r}")


def _ordered(mounts: Sequence[SandboxMount]) -> list[SandboxMount]:
    """Last mount per target wins; parents before children (stable otherwise)."""
    last: dict[str, SandboxMount] = {}
    for m in mounts:
        key = posixpath.normpath(m.target)
        last.pop(key, None)
        last[key] = m
    return sorted(last.values(), key=lambda m: len(Path(posixpath.normpath(m.target)).parts))


def _mount_one(m: SandboxMount, where: Path, ids: IdRange) -> None:
    if m.kind == "tmpfs":
        options = [f"mode={m.mode:o}" if m.mode is not None else "mode=1777",
                   f"uid={ids.base}", f"gid={ids.base}"]
        if m.size:
            options.append(f"size={m.size}")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if m.readonly else 0)
        _libc.mount("tmpfs", where, "tmpfs", flags, ",".join(options))
        return
    if m.shifted:
        _libc.mount(str(m.source), where, None, _libc.MS_BIND, None)
    else:
        _idmap.bind_idmapped(Path(str(m.source)), where, ids)
    if m.readonly:
        try:
            _libc.mount(None, where, None,
                        _libc.MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
        except OSError:
            _libc.umount2(where, _libc.MNT_DETACH)
            raise


def _unmount(where: Path) -> None:
    try:
        _libc.umount2(where, _libc.MNT_DETACH)
    except OSError as exc:
        raise SandboxError(f"cannot unmount {where}: {exc.strerror}") from exc


def _refuse_inside_shared(rootfs: Path, m: SandboxMount,
                          shared: list[tuple[str, str]]) -> None:
    """No mount point inside a shared (cache) mount: other builds change its content as
    they please, and could swap a directory on the way for a symlink out of the rootfs
    between our check and the mount, or before the mount point is removed again."""
    resolved = relative_inside(rootfs, resolve_in_root(rootfs, m.target))
    for target, point in shared:
        if resolved.startswith(point.rstrip("/") + "/"):
            raise SandboxError(f"cannot mount on {m.target}: it lies inside the cache mount "
                               f"{target}, which other builds share",
                               hint="mount it outside the cache mount's target")


def _as_root_of(ids: IdRange, action: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with _idmap.as_container_root(ids):
            action()
    return run


@contextmanager
def mounted(rootfs: Path, mounts: Sequence[SandboxMount], ids: IdRange) -> Iterator[None]:
    """Mount ``mounts`` in ``rootfs`` (a sandbox view) for the block; unmount and remove
    stubs after it. Stubs are made as the container root of ``ids``."""
    validate_mounts(mounts)
    shared: list[tuple[str, str]] = []  # (target, resolved) of shared mounts made so far
    with ExitStack() as stack:
        for m in _ordered(mounts):
            _refuse_inside_shared(rootfs, m, shared)
            stubs = MountStubs(rootfs)
            stack.callback(_as_root_of(ids, stubs.remove))  # after the unmount below
            is_dir = m.kind == "tmpfs" or os.path.isdir(str(m.source))
            try:
                with _idmap.as_container_root(ids):
                    resolved = stubs.add(m.target, is_dir=is_dir)
            except OSError as exc:
                raise SandboxError(
                    f"cannot create the mount point {m.target}: {exc.strerror}") from exc
            stubs.setup_done()
            where = rootfs / resolved.lstrip("/")
            try:
                _mount_one(m, where, ids)
            except OSError as exc:
                what = "tmpfs" if m.kind == "tmpfs" else str(m.source)
                raise SandboxError(f"cannot mount {what} on {m.target}: {exc.strerror}") from exc
            stack.callback(_unmount, where)
            if m.shared:
                shared.append((m.target, resolved))
        yield
