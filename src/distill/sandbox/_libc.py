"""Thin ctypes wrappers around the few libc calls the sandbox needs.

Kept private to ``distill.sandbox``: nothing else in distill makes syscalls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_BIND = 4096
MS_PRIVATE = 1 << 18
MS_REC = 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syncfs.restype = ctypes.c_int


def _b(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(
    source: str | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int,
    data: str | None,
) -> None:
    """mount(2); raises OSError with errno set on failure."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount")


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2); raises OSError with errno set on failure."""
    _check(_libc.umount2(_b(target), flags), "umount2")


def unshare(flags: int) -> None:
    """unshare(2); raises OSError with errno set on failure."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2); raises OSError with errno set on failure."""
    _check(_libc.setns(fd, nstype), "setns")


def syncfs(path: str | os.PathLike[str]) -> None:
    """syncfs(2) on the filesystem holding ``path``: one flush instead of many fsyncs."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check(_libc.syncfs(fd), "syncfs")
    finally:
        os.close(fd)
