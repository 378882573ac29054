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

from distill.confine import open_dir_in_root, relative_inside, resolve_in_root
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
    #: no path distill or bubblewrap resolves may lead through it (see :func:`mounted`).
    shared: bool = False
    #: Bind ``source_path`` inside ``source`` (resolved there as if chrooted, by
    #: descriptor: ``source`` may be shared), not ``source`` itself.
    source_path: str | None = None


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


#: Where bubblewrap mounts its own file systems: never a working directory.
SANDBOX_MOUNTS = ("/proc", "/dev")


def _shift(m: SandboxMount, ids: IdRange) -> bool:
    """Whether ``m``'s source must be idmapped (never rootless: ids are already ours)."""
    return ids.shifted and not m.shifted


def _source_tree(m: SandboxMount, ids: IdRange) -> int:
    """A detached mount of ``m``'s source (idmapped unless ``shifted``), found by
    descriptor when it lies inside a directory others may change."""
    source = Path(str(m.source))
    if m.source_path is None:
        return _idmap.idmapped_tree(source, ids) if _shift(m, ids) else \
            _idmap.cloned_tree(source)
    fd = open_dir_in_root(source, m.source_path)
    if fd is None:
        raise SandboxError(f"mount source {m.source_path} does not exist (or is not a "
                           "directory) in the cache")
    try:
        return _idmap.idmapped_tree(fd, ids) if _shift(m, ids) else _idmap.cloned_tree(fd)
    finally:
        os.close(fd)


def _mount_one(m: SandboxMount, where: Path, ids: IdRange) -> None:
    if m.kind == "tmpfs":
        options = [f"mode={m.mode:o}" if m.mode is not None else "mode=1777",
                   f"uid={ids.base}", f"gid={ids.base}"]
        if m.size:
            options.append(f"size={m.size}")
        flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if m.readonly else 0)
        _libc.mount("tmpfs", where, "tmpfs", flags, ",".join(options))
        return
    _idmap.attach(_source_tree(m, ids), where)
    if m.readonly:
        try:
            _libc.mount(None, where, None,
                        _libc.MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
        except OSError:
            _libc.umount2(where, _libc.MNT_DETACH)
            raise


def _unmount(mount_root: int, target: str) -> None:
    """Detach the mount whose root ``mount_root`` is open, through the descriptor: by
    the time it is unmounted, the run may have renamed the mount point's parent and put
    a symlink to a host directory in its place."""
    try:
        _libc.umount2(f"/proc/self/fd/{mount_root}", _libc.MNT_DETACH)
    except OSError as exc:
        raise SandboxError(f"cannot unmount {target}: {exc.strerror}") from exc
    finally:
        os.close(mount_root)


def _as_root_of(ids: IdRange, action: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with _idmap.as_container_root(ids):
            action()
    return run


def _inside(path: str, point: str) -> bool:
    """``path`` lies strictly below ``point`` (both resolved, symlink-free)."""
    return path.startswith(point.rstrip("/") + "/")


@dataclass(frozen=True)
class Prepared:
    """What :func:`mounted` resolved: the working directory, and the mount points of the
    extra paths it was asked for (``/dev``, ``/proc``, host files), inside the rootfs."""

    cwd: str
    points: dict[str, str]


class _Mounter:
    """Mount points (stubs) and mounts in a view, undone by ``stack``."""

    def __init__(self, rootfs: Path, ids: IdRange, stack: ExitStack) -> None:
        self.rootfs, self.ids, self.stack = rootfs, ids, stack

    def point(self, target: str, is_dir: bool) -> str:
        """Create the mount point ``target`` if missing; its resolved path."""
        stubs = MountStubs(self.rootfs)
        self.stack.callback(_as_root_of(self.ids, stubs.remove))  # after its unmount
        try:
            with _idmap.as_container_root(self.ids):
                resolved = stubs.add(target, is_dir=is_dir)
        except OSError as exc:
            raise SandboxError(f"cannot create the mount point {target}: {exc.strerror}") \
                from exc
        stubs.setup_done()
        if resolved == "/":
            raise SandboxError(f"cannot mount on {target}: it resolves to the root "
                               "directory", hint="choose a target that is not / or a "
                               "symlink to it")
        return resolved

    def mount(self, m: SandboxMount, resolved: str) -> None:
        where = self.rootfs / resolved.lstrip("/")
        try:
            _mount_one(m, where, self.ids)
        except OSError as exc:
            what = "tmpfs" if m.kind == "tmpfs" else str(m.source)
            raise SandboxError(f"cannot mount {what} on {m.target}: {exc.strerror}") from exc
        # nothing but distill has touched the path yet: it leads to the new mount's root
        self.stack.callback(_unmount, os.open(where, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC),
                            m.target)


def _is_dir(m: SandboxMount) -> bool:
    return m.kind == "tmpfs" or m.source_path is not None or os.path.isdir(str(m.source))


@contextmanager
def mounted(rootfs: Path, mounts: Sequence[SandboxMount], ids: IdRange, *, cwd: str = "/",
            extra: Sequence[tuple[str, bool]] = ()) -> Iterator[Prepared]:
    """Mount ``mounts`` in ``rootfs`` (a sandbox view) for the block; unmount and remove
    stubs after it. Stubs are made as the container root of ``ids``.

    Also resolves ``cwd`` and makes the mount points ``extra`` (path, is a directory).
    Shared mounts (cache mounts, which other builds change at will) are mounted last,
    after every path has been resolved and every stub made: no path distill resolves,
    and none it hands to bubblewrap, leads through shared content, where a concurrent
    RUN could swap a directory for a symlink out of the rootfs or into /proc between a
    check and its use. A mount point or working directory *inside* a shared mount is
    therefore refused (its root is fine), and so is an extra path (a host file
    bubblewrap would bind there, creating it through whatever the cache holds).
    """
    validate_mounts(mounts)
    ordered = _ordered(mounts)
    with ExitStack() as stack:
        mounter = _Mounter(rootfs, ids, stack)
        private = [m for m in ordered if not m.shared]
        made: list[tuple[SandboxMount, str]] = []
        for m in private:
            made.append((m, mounter.point(m.target, _is_dir(m))))
            mounter.mount(*made[-1])
        shared = [(m, mounter.point(m.target, _is_dir(m))) for m in ordered if m.shared]
        for m, resolved in [*made, *shared]:
            for other, point in shared:
                if other is not m and (_inside(resolved, point) or resolved == point):
                    raise SandboxError(
                        f"cannot mount on {m.target}: it lies inside the cache mount "
                        f"{other.target}, which other builds share",
                        hint="mount it outside the cache mount's target")
        resolved_cwd = working_dir(rootfs, cwd, [point for _, point in shared])
        points = {}
        for path, is_dir in extra:
            where = _extra_point(rootfs, path)
            for other, point in shared:
                if _inside(where, point):
                    raise SandboxError(
                        f"cannot provide {path} to the RUN step: it lies inside the cache "
                        f"mount {other.target}, which other builds share",
                        hint=f"mount the cache elsewhere than {other.target}")
            inside_shared = any(where == p for _, p in shared)
            points[path] = where if inside_shared else mounter.point(path, is_dir)
        for m, resolved in shared:
            mounter.mount(m, resolved)
        yield Prepared(resolved_cwd, points)


def _extra_point(view: Path, path: str) -> str:
    """Where bubblewrap is to mount ``path`` (/dev, /proc or a host file), resolved.

    bubblewrap mounts /dev and /proc first, then binds the host files, resolving their
    paths itself: through /proc (``/proc/self/root/oldroot`` is the host's /) or /dev
    (``/dev/fd``) it would create and bind files on the host, and a /proc or /dev that
    is a symlink would move those file systems where the working directory and the
    host files may lead into them (runc's CVE-2024-21626 class again). So /dev and
    /proc must be what they say, directories or missing, and nothing bubblewrap
    resolves may lead into them.
    """
    where = relative_inside(view, resolve_in_root(view, path))
    if path in SANDBOX_MOUNTS:
        host = view / path.lstrip("/")
        if where != path or (os.path.lexists(host) and not os.path.isdir(host)):
            raise SandboxError(
                f"{path} in the image is not a directory"
                + (f" (a symbolic link to {where})" if where != path else ""),
                hint=f"a RUN step mounts its own {path} there; remove what the image "
                     f"has at {path}")
        return where
    for mount in SANDBOX_MOUNTS:
        if where == mount or _inside(where, mount):
            raise SandboxError(f"cannot provide {path} to the RUN step: in the image it "
                               f"leads to {where}, inside {mount}",
                               hint=f"make {path} a regular file (or remove it) in the image")
    return where


def working_dir(view: Path, cwd: str, shared: Sequence[str] = ()) -> str:
    """``cwd`` resolved inside the view, symlinks and all, outside /proc and /dev, and not
    inside a shared mount (``shared``: their mount points, resolved).

    bubblewrap changes directory while one of its descriptors still points at
    the host's /proc; through ``/proc/self/fd/N`` (or ``/dev/fd/N``) a working
    directory would lead out of the sandbox (the class of runc's CVE-2024-21626).
    Resolved here, the path it gets has no symlink in it, and none of it is a
    file system bubblewrap mounts itself, or one other RUNs may change meanwhile
    (the mount's own root, which nobody can rename, is fine).
    """
    resolved = relative_inside(view, resolve_in_root(view, cwd))
    for mount in SANDBOX_MOUNTS:
        if resolved == mount or _inside(resolved, mount):
            raise SandboxError(f"the working directory {cwd!r} is inside {mount}, "
                               "which a RUN step cannot use as its working directory",
                               hint=f"it resolves to {resolved}; choose a WORKDIR "
                                    "outside /proc and /dev")
    for point in shared:
        if _inside(resolved, point):
            raise SandboxError(
                f"the working directory {cwd!r} lies inside the cache mount {point}, "
                "which other builds share and may change while this RUN starts",
                hint=f"use {point} itself or a directory outside it as the WORKDIR")
    return resolved
