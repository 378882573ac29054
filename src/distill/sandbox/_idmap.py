"""The id range RUN steps live in, and idmapped mounts that show them their files.

A RUN never runs as host root. Its processes live in a user namespace that maps
container ids ``0 .. count-1`` to host ids ``base .. base+count-1`` (as podman's
``--userns=auto`` does): container root is an unprivileged host uid that owns no
host file. Image files stay owned by their real ids on disk (root's files are 0:0
in snapshots and in layers); an *idmapped mount* shows them to the sandbox shifted
by ``base``, so inside they are root's again, and what the sandbox creates lands on
disk with its container ids. No chown of any snapshot is ever needed.

The kernel interfaces (``open_tree``, ``mount_setattr``, ``move_mount``, ``fsopen``,
``fsconfig``, ``fsmount``) have no Python binding; the wrappers here are ctypes
calls of the raw syscalls, whose numbers are the same on every architecture
(they were added after the syscall tables were unified).

Writes that distill itself makes in such a tree (mount points, the working
directory) must carry container ids too: :func:`as_container_root` switches the
calling *thread's* filesystem uid and gid to the range's base for a block
(``setfsuid`` is per thread), keeping its capabilities.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distill.errors import SandboxError

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_MOUNT_SETATTR = 442

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_O_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSOPEN_CLOEXEC = 1
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4

_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsgid.argtypes = [ctypes.c_uint]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


Extents = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class IdRange:
    """Container ids ``0 .. count-1`` are host ids ``base .. base+count-1``.

    Rootless (``own`` set), container ids are this process's own ids: base 0, no
    idmapped mount, and a RUN's namespace maps each id to itself. ``own`` holds the
    extents ``(start, count)`` of this process's uid and gid maps that cover ids
    ``0 .. count-1``: a child namespace's map needs one line per parent extent, since
    the kernel refuses a line that spans two.
    """

    base: int
    count: int
    own: tuple[Extents, Extents] | None = None

    @property
    def shifted(self) -> bool:
        """Whether container ids differ from this process's (idmapped mounts show them)."""
        return self.own is None

    def map_lines(self, kind: str = "uid") -> bytes:
        """The ``uid_map`` (or ``gid_map``, ``kind="gid"``) of a RUN's user namespace."""
        if self.own is None:
            return f"0 {self.base} {self.count}\n".encode()
        extents = self.own[0] if kind == "uid" else self.own[1]
        return "".join(f"{start} {start} {count}\n" for start, count in extents).encode()

    def contains(self, container_id: int) -> bool:
        return 0 <= container_id < self.count


def _extents(text: str) -> list[tuple[int, int, int]]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            out.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return out


def own_ids(uid_map: str, gid_map: str) -> IdRange:
    """Rootless: the ids ``0 .. n-1`` this namespace maps without a gap, for uids and gids
    alike, split at the extents' edges."""
    def covered(text: str) -> Extents:
        parts, next_id = [], 0
        for inside, _outside, count in sorted(_extents(text)):
            if inside != next_id:
                break
            parts.append((inside, count))
            next_id += count
        return tuple(parts)

    uids, gids = covered(uid_map), covered(gid_map)
    count = min(sum(c for _, c in uids), sum(c for _, c in gids))
    if count == 0:
        raise SandboxError("this user namespace does not map id 0: RUN steps cannot run",
                           hint="run distill as the user itself; it makes its own namespace")

    def clip(extents: Extents) -> Extents:
        out, left = [], count
        for start, n in extents:
            if left > 0:
                out.append((start, min(n, left)))
                left -= min(n, left)
        return tuple(out)

    return IdRange(0, count, (clip(uids), clip(gids)))


def sandbox_range(own_uid_map: str | None = None, own_gid_map: str | None = None) -> IdRange:
    """The host ids RUN steps get: the upper half of the ids this process may map.

    On a host (identity map of all 2^32-1 ids) that is ``2^31 .. 2^32-2``: far
    above any account, any subordinate range and systemd-nspawn's container
    range (which ends at 0x6FFFFFFF), so the sandbox's root owns nothing here.
    In a user namespace (rootless, see :mod:`~distill.sandbox.rootless`) it is the
    namespace's own ids, unshifted (:func:`own_ids`).
    """
    text = own_uid_map if own_uid_map is not None else Path("/proc/self/uid_map").read_text()
    if any(inside == 0 and count >= 2**32 - 1 for inside, _, count in _extents(text)):
        return IdRange(2**31, 2**31 - 1)
    gids = own_gid_map if own_gid_map is not None else Path("/proc/self/gid_map").read_text()
    return own_ids(text, gids)


_lock = threading.Lock()
_userns: dict[IdRange, int] = {}

# A child that makes a user namespace and waits (stdin) while its maps are written.
_HOLDER = ("import ctypes,sys\n"
           "if ctypes.CDLL(None).unshare(0x10000000): sys.exit(1)\n"
           "sys.stdout.write('ready'); sys.stdout.flush(); sys.stdin.read()\n")


def userns_fd(ids: IdRange) -> int:
    """A file descriptor of a user namespace mapping ``ids`` (made once per process)."""
    with _lock:
        if ids in _userns:
            return _userns[ids]
        child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HOLDER],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={})
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.read(5) != b"ready":
                raise SandboxError("cannot create a user namespace for RUN steps",
                                   hint="are user namespaces disabled "
                                        "(sysctl user.max_user_namespaces)?")
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{child.pid}/{name}", "wb", buffering=0) as f:
                    f.write(ids.map_lines(name[:3]))
            fd = os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SandboxError(f"cannot create a user namespace for RUN steps: {exc}") from exc
        finally:
            child.stdin.close()
            child.stdout.close()
            child.wait()
        _userns[ids] = fd
        return fd


def cloned_tree(source: Path | int, *, recursive: bool = False) -> int:
    """A detached clone of the mount tree at ``source`` (a path, or a descriptor of the
    very directory or file, which no later rename can redirect); its fd."""
    flags = _OPEN_TREE_CLONE | _O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    if isinstance(source, int):
        args: tuple[int, bytes, int] = (source, b"", flags | _AT_EMPTY_PATH)
    else:
        args = (_AT_FDCWD, os.fsencode(source), flags)
    try:
        return _check(_libc.syscall(_SYS_OPEN_TREE, *args), "open_tree")
    except OSError as exc:
        raise SandboxError(f"cannot clone the mount at {source}: {exc.strerror}") from exc


def idmapped_tree(source: Path | int, ids: IdRange, *, recursive: bool = False) -> int:
    """A detached clone of the mount tree at ``source``, idmapped by ``ids``; its fd."""
    tree = cloned_tree(source, recursive=recursive)
    attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd(ids))
    try:
        _check(_libc.syscall(_SYS_MOUNT_SETATTR, tree, b"",
                             _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0),
                             ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")
    except OSError as exc:
        os.close(tree)
        raise SandboxError(
            f"cannot make an idmapped mount of {source}: {exc.strerror}",
            hint="RUN steps need a filesystem that supports idmapped mounts "
                 "(ext4, xfs, btrfs, tmpfs on Linux 6.3+) for distill's store") from exc
    return tree


def attach(tree: int, target: Path) -> None:
    """Attach the detached mount ``tree`` at ``target`` (then close the fd)."""
    try:
        _check(_libc.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, os.fsencode(target),
                             _MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
    except OSError as exc:
        raise SandboxError(f"cannot attach a mount at {target}: {exc.strerror}") from exc
    finally:
        os.close(tree)


def bind_idmapped(source: Path, target: Path, ids: IdRange, *, recursive: bool = False) -> None:
    """Bind ``source`` at ``target`` with ids shifted by ``ids``."""
    attach(idmapped_tree(source, ids, recursive=recursive), target)


def _caps() -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return header, data


@contextmanager
def as_container_root(ids: IdRange) -> Iterator[None]:
    """Within the block, files this thread creates are owned by container root.

    setfsuid/setfsgid to ``ids.base`` (per thread); the kernel then clears the
    filesystem capabilities from the effective set, which are raised again from
    the permitted set so that distill may still create mount points anywhere.
    Rootless, container root is distill itself: nothing to switch.
    """
    if not ids.shifted:
        yield
        return
    _libc.setfsuid(ids.base)
    _libc.setfsgid(ids.base)
    try:
        header, data = _caps()
        for half in data:
            half.effective = half.permitted
        _check(_libc.capset(ctypes.byref(header), data), "capset")
        yield
    finally:
        # Back to fsuid 0: the kernel restores the filesystem capabilities itself.
        _libc.setfsgid(0)
        _libc.setfsuid(0)


def _fsconfig(fs: int, key: str, value: str | None) -> None:
    if value is None:
        result = _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
    else:
        result = _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(),
                               os.fsencode(value), 0)
    _check(result, f"fsconfig {key}")


def mount_overlay_as(ids: IdRange, target: Path, lowers: list[str], upper: str, work: str,
                     options: dict[str, str | None]) -> None:
    """Mount an overlay at ``target`` whose creator is container root of ``ids``.

    Overlayfs does its own work (copy-up, whiteouts) with its creator's
    credentials; over idmapped layers those must map to container ids, so the
    filesystem context is opened as container root. Layers are given one at a
    time (``lowerdir+``, Linux 6.8+), so their number is not limited by the
    size of a mount option page.
    """
    with as_container_root(ids):  # overlayfs keeps the credentials of fill_super
        fs = _check(_libc.syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC), "fsopen")
        try:
            for lower in lowers:
                _fsconfig(fs, "lowerdir+", lower)
            _fsconfig(fs, "upperdir", upper)
            _fsconfig(fs, "workdir", work)
            for key, value in options.items():
                _fsconfig(fs, key, value)
            _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
                   "fsconfig create")
            # nodev: a device node in an image never opens a host device; nosuid:
            # no file of an image gains privileges (no_new_privs says so too).
            mnt = _check(_libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC,
                                       _MOUNT_ATTR_NODEV | _MOUNT_ATTR_NOSUID), "fsmount")
        finally:
            os.close(fs)
    attach(mnt, target)
