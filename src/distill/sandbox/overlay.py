"""Overlay mounts: a writable root filesystem over read-only snapshot directories.

The upper directory of the mount collects exactly what a step changed, in
overlayfs format (whiteouts are 0:0 character devices, replaced directories
carry ``trusted.overlay.opaque=y``). :func:`distill.sandbox.layers.write_layer_from_upper`
turns it into a layer tar without walking the lower snapshots.

Options ``redirect_dir=off,metacopy=off,index=off,xino=off`` keep the upper
directory a self-contained diff: no renamed-directory redirects, no
metadata-only copy-ups that point into lower layers, no inode index.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distill.errors import SandboxError
from distill.sandbox import _idmap, _libc, rootless, xattrs
from distill.sandbox._idmap import IdRange
from distill.sandbox._overlayfs import is_opaque, is_whiteout

#: Options that make the upper directory a clean, self-contained diff; ``volatile`` makes
#: fsync inside a step a no-op (the upper dir is synced once when the step ends).
CLEAN_DIFF_OPTIONS = "redirect_dir=off,metacopy=off,index=off,xino=off,volatile"
#: The same in a user namespace (rootless): overlayfs keeps its marks in ``user.overlay.*``
#: xattrs, since ``trusted.*`` needs the host's CAP_SYS_ADMIN; with ``userxattr`` the kernel
#: wants redirects refused (``nofollow``) rather than ``off`` (which means "follow").
ROOTLESS_DIFF_OPTIONS = "userxattr,redirect_dir=nofollow,metacopy=off,index=off,xino=off,volatile"


def diff_options() -> str:
    """The overlay options for this process: rootless or not."""
    return ROOTLESS_DIFF_OPTIONS if rootless.active() else CLEAN_DIFF_OPTIONS

#: mount(2) copies at most one page of option data; stay well below it.
_MAX_OPTIONS = 3000

#: Every overlay is nosuid and nodev: a device node or setuid file that a layer carries
#: is never a host device or a privilege for distill's own reads (RUN steps get
#: bubblewrap's nodev bind and no_new_privs on top of it).
_MS_NOSUID, _MS_NODEV = 2, 4
MOUNT_FLAGS = "nodev,nosuid"

#: The kernel refuses more lower layers than this (OVL_MAX_STACK).
_MAX_LOWERS = 500


@dataclass(frozen=True)
class OverlayMount:
    """A mounted overlay: ``merged`` is the root filesystem, ``upper`` its diff."""

    merged: Path
    upper: Path


def _escape(path: str) -> str:
    """Escape the characters overlayfs treats as separators in mount options."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _options(lowers: Sequence[str], upper: str, work: str) -> str:
    lowerdir = ":".join(_escape(p) for p in lowers)
    return (
        f"lowerdir={lowerdir},upperdir={_escape(upper)},workdir={_escape(work)},"
        f"{diff_options()}"
    )


def _mount_failed(exc: OSError | None, detail: str = "") -> SandboxError:
    reason = exc.strerror if exc is not None else detail
    hint = "distill needs root to mount overlayfs; see `dmesg` for the kernel's reason"
    if rootless.active():
        hint = ("rootless, overlayfs needs Linux 5.11 or newer, and the store on a real "
                "filesystem (in a container: a volume; the container's own overlay root "
                "cannot hold an overlay's upper directory); see `dmesg`")
    elif exc is not None and exc.errno == errno.EINVAL:
        hint = (
            "the kernel rejected the overlay options (is overlayfs available, and are "
            "upper/work on a filesystem that supports trusted.* xattrs?); see `dmesg`"
        )
    return SandboxError(f"cannot mount overlay filesystem: {reason}", hint=hint)


def _mount_short(lowers: Sequence[Path], scratch: Path, merged: Path) -> bool:
    """Mount with absolute paths via mount(2); False if the options are too long."""
    data = _options([str(p) for p in lowers], str(scratch / "upper"), str(scratch / "work"))
    if len(data) > _MAX_OPTIONS:
        return False
    try:
        _libc.mount("overlay", merged, "overlay", _MS_NOSUID | _MS_NODEV, data)
    except OSError as exc:
        raise _mount_failed(exc) from exc
    return True


def _mount_long(lowers: Sequence[Path], scratch: Path, merged: Path) -> None:
    """Mount many layers: short relative names (``l/0``, ``l/1``...) resolved from ``scratch``.

    Each ``scratch/l/N`` is a symlink to a lower; overlayfs resolves the paths
    once at mount time, so the symlinks are removed again on unmount. The
    relative paths need a working directory, which only a child process can
    change safely (this process may have threads), hence the `mount` binary.
    """
    if len(lowers) > _MAX_LOWERS:
        raise SandboxError(
            f"cannot mount {len(lowers)} layers: overlayfs stacks at most {_MAX_LOWERS}",
            hint="squash the base image or use fewer layers",
        )
    farm = scratch / "l"
    farm.mkdir()
    names = []
    for i, lower in enumerate(lowers):
        (farm / str(i)).symlink_to(lower.resolve())
        names.append(f"l/{i}")
    data = _options(names, "upper", "work")
    mount_bin = shutil.which("mount") or "/bin/mount"
    try:
        proc = subprocess.run(
            [mount_bin, "-t", "overlay", "overlay", "-o", f"{MOUNT_FLAGS},{data}", str(merged)],
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError as exc:
        raise _mount_failed(exc) from exc
    if proc.returncode != 0:
        raise _mount_failed(None, proc.stderr.decode(errors="replace").strip())


def _mount_for_sandbox(lowers: Sequence[Path], scratch: Path, merged: Path,
                       ids: IdRange) -> None:
    """Mount over idmapped layers, as container root of ``ids`` (see :mod:`._idmap`).

    Every lower and the scratch directory (upper and work must share a mount) are
    cloned as detached idmapped mounts and named by ``/proc/self/fd/N``; the overlay
    keeps them alive until it is unmounted.
    """
    trees: list[int] = []
    try:
        for lower in lowers:
            trees.append(_idmap.idmapped_tree(lower, ids))
        rw = _idmap.idmapped_tree(scratch, ids)
        trees.append(rw)
        options = {key: value or None for key, _, value in
                   (option.partition("=") for option in CLEAN_DIFF_OPTIONS.split(","))}
        _idmap.mount_overlay_as(ids, merged, [f"/proc/self/fd/{t}" for t in trees[:-1]],
                                f"/proc/self/fd/{rw}/upper", f"/proc/self/fd/{rw}/work",
                                options)
    except OSError as exc:
        raise _mount_failed(exc) from exc
    finally:
        for tree in trees:
            os.close(tree)


def _unmount(merged: Path) -> None:
    try:
        _libc.umount2(merged)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise SandboxError(f"cannot unmount {merged}: {exc.strerror}") from exc
        # A process still holds the mount (or a file in it): detach it lazily;
        # the kernel frees it when the last user goes away.
        try:
            _libc.umount2(merged, _libc.MNT_DETACH)
        except OSError as exc2:
            raise SandboxError(f"cannot detach {merged}: {exc2.strerror}") from exc2


def _dir_identity(path: Path) -> tuple[object, ...] | None:
    """What makes a directory entry in a layer: type, mode, owner, mtime, xattrs."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
            sorted(xattrs.of_path(str(path)).items()))


def _lower_dir(lowers: Sequence[Path], rel: tuple[str, ...]) -> Path | None:
    """The directory the lowers show at ``rel`` (top-most wins), or None."""
    for lower in lowers:
        hidden_below = False
        path = lower
        for i, part in enumerate(rel):
            path = path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            if is_whiteout(path, st) or not stat.S_ISDIR(st.st_mode):
                return None
            if i == len(rel) - 1:
                return path
            hidden_below = hidden_below or is_opaque(path)
        if hidden_below:
            return None
    return None


def _prune_unchanged_dirs(upper: Path, lowers: Sequence[Path]) -> None:
    """Drop empty directories that were only copied up: same entry as in the lowers.

    Creating and removing a mount stub (see run.py) copies its parent, e.g.
    /etc, up into the upper dir; without this, that no-op would ship in the
    layer. Pruning them leaves the merged view unchanged. Runs after unmount
    (changing an upper dir under a live overlay is undefined).

    Only directories the lowers have can be copy-ups, so the walk never goes below
    one they lack (a RUN's own deep tree is not walked), and it is iterative: a
    hostile base image's depth cannot exhaust Python's stack.
    """
    # Post-order over (rel, children visited?): a directory is judged after its children.
    stack: list[tuple[tuple[str, ...], bool]] = [((), False)]
    prunable: set[tuple[str, ...]] = set()
    while stack:
        rel, visited = stack.pop()
        path = upper.joinpath(*rel)
        if not visited:
            if is_opaque(path) or (rel and _lower_dir(lowers, rel) is None):
                continue  # replaces the lowers' directory, or is new: never a mere copy-up
            stack.append((rel, True))
            with os.scandir(path) as entries:
                stack.extend(((*rel, e.name), False) for e in entries
                             if e.is_dir(follow_symlinks=False))
            continue
        children = [name for name in os.listdir(path) if (*rel, name) in prunable]
        if children:
            st = os.lstat(path)
            for name in children:
                os.rmdir(path / name)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # rmdir changed it
        if rel and not any(path.iterdir()):
            lower = _lower_dir(lowers, rel)
            if lower is not None and _dir_identity(lower) == _dir_identity(path):
                prunable.add(rel)


def _cleanup(scratch: Path) -> None:
    """Remove everything in scratch except ``upper``; only call when unmounted."""
    merged = scratch / "merged"
    if merged.is_dir() and not merged.is_symlink():
        os.rmdir(merged)  # never rmtree a possible mount point: it would empty the upper dir
    for name in ("work", "l", "empty"):
        path = scratch / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def overlay_mount(lowers: Sequence[Path], scratch: Path,
                  sandbox: IdRange | None = None) -> Iterator[OverlayMount]:
    """Mount an overlay of ``lowers`` (top-most first) with its upper dir in ``scratch``.

    ``scratch`` must be an empty directory on the same filesystem as the store
    (so the upper dir can later be renamed into it). It receives ``upper/``,
    ``work/`` and ``merged/``. With no lowers, an empty directory stands in
    (a ``FROM scratch`` root filesystem). On exit the overlay is unmounted
    (lazily if busy) and everything but ``scratch/upper`` is removed. Empty
    directories that were merely copied up, identical to the lowers' (mount
    stubs leave those), are pruned from ``upper`` when the block exits
    normally; the merged view stays the same.

    With ``sandbox``, the overlay is what a RUN step sees: its layers are
    idmapped into that id range and its creator is the range's root, so files
    keep their real owners on disk (see :mod:`distill.sandbox._idmap`). Only
    :func:`distill.sandbox.run.run_in_rootfs` (and code inside
    :func:`~distill.sandbox._idmap.as_container_root`) can create files in it.
    """
    scratch = Path(scratch)
    if not scratch.is_dir():
        raise SandboxError(f"overlay scratch directory {scratch} does not exist")
    if any(scratch.iterdir()):
        raise SandboxError(f"overlay scratch directory {scratch} is not empty")
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for path in (upper, work, merged):
        path.mkdir()
    # The merged root directory takes its attributes from the upper directory.
    os.chmod(upper, 0o755)
    os.chmod(merged, 0o755)
    lowers = [Path(p) for p in lowers]
    if not lowers:
        empty = scratch / "empty"
        empty.mkdir(mode=0o755)
        lowers = [empty]
    try:
        if sandbox is not None and sandbox.shifted:
            _mount_for_sandbox(lowers, scratch, merged, sandbox)
        elif not _mount_short(lowers, scratch, merged):
            _mount_long(lowers, scratch, merged)
    except BaseException:
        _cleanup(scratch)
        raise
    try:
        yield OverlayMount(merged=merged, upper=upper)
    finally:
        _unmount(merged)  # raises (leaving scratch as is) if even a lazy detach fails
        _cleanup(scratch)
    _prune_unchanged_dirs(upper, lowers)
    # The mount is volatile (fsync inside a step is a no-op: dpkg alone issues thousands);
    # one syncfs makes the finished upper dir durable before anyone keeps it.
    _libc.syncfs(upper)
