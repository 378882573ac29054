"""Path resolution confined to a root, as if chrooted: '..' and symlinks never leave it.

Every path distill reads from a build context or writes into a root filesystem
goes through here (build steps and the sandbox alike), so neither '../' nor a symlink
(in the context or in a base layer) can reach outside. Files of a root are read with
:func:`read_file_in_root` / :func:`open_in_root`: opened inside the root by the kernel
(openat2), regular files only, never a device or a FIFO, size-capped. A leaf module: it
imports only ``distill.errors``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
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
            try:
                target = os.readlink(candidate)
            except OSError as e:  # swapped for something else since the lstat above
                raise DistillError(f"cannot resolve {path!r}: {e.strerror} (it changed "
                                   "while it was being resolved)") from None
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


def make_dirs(root: Path, path: str, *, mode: int = 0o755,
              owner: tuple[int, int] | None = None) -> Path:
    """``mkdir -p`` of ``path`` inside ``root``, symlinks followed as if chrooted there
    (Go's ``MkdirAll`` in the root, as BuildKit's file ops): the missing directories are
    created with ``mode`` (not subject to the umask) and, if given, ``owner``; existing
    ones are kept as they are. Returns the host path of ``path``.

    Raises NotADirectoryError, whose ``filename`` is the '/'-rooted path inside ``root``,
    when what exists at the deepest existing component is not a directory."""
    host, missing = existing_prefix(root, path)
    if not os.path.isdir(host):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                 relative_inside(root, host))
    for part in missing:
        host = host / part
        os.mkdir(host, 0o700)
        if owner is not None:
            os.lchown(host, *owner)
        os.chmod(host, mode)
    return host


def relative_inside(root: Path, host_path: Path) -> str:
    """The '/'-rooted path of host_path inside root (host_path must be inside)."""
    rel = os.path.relpath(host_path, root)
    return "/" if rel == "." else "/" + rel


# -- opening files inside a root -------------------------------------------------------
#
# openat2(2) with RESOLVE_IN_ROOT resolves a path with a directory descriptor as '/':
# '..', absolute symlinks and relative ones all stay inside, and the kernel does it in
# one walk, so a symlink swapped in while distill looks (a RUN of another build sharing
# a cache, a context being edited) cannot lead it out; RESOLVE_NO_MAGICLINKS refuses
# /proc-style magic links. Hand-written through ctypes because nothing installable
# offers it: the standard library has no openat2, and the one binding on PyPI
# (``pathrs``) needs libpathrs, a native library that neither PyPI nor Debian ship.
# Without openat2 (kernels before 5.6, or a seccomp filter refusing it) the path is
# resolved by :func:`resolve_in_root` and opened with O_NOFOLLOW: a symlink swapped in
# at the last moment is refused rather than followed.
#
# A file is first opened O_PATH (no driver's open() runs, a FIFO cannot block), fstat'ed,
# and only a regular file is reopened for reading through /proc/self/fd.

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _openat2_number() -> int | None:
    """openat2's syscall number: 437 in the unified table of every architecture since
    Linux 5.1, except the ones that offset theirs (left to the fallback)."""
    machine = os.uname().machine
    return None if machine.startswith(("mips", "alpha", "ia64")) else 437


_SYS_OPENAT2 = _openat2_number()
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_missing = _SYS_OPENAT2 is None


def _openat2(dirfd: int, path: str, flags: int) -> int:
    if _SYS_OPENAT2 is None:      # callers use the fallback on such machines
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    name = os.fsencode(path)
    err = errno.EAGAIN
    for _ in range(32):  # EAGAIN: a rename raced the walk and the kernel asks to retry
        fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                           ctypes.c_char_p(name), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), path)


def _open(root: Path | str, path: str, follow: bool, flags: int) -> int:
    """Open ``path`` inside ``root`` with ``flags`` (the last symlink followed, inside the
    root, when ``follow``); OSError as open(2) reports it."""
    global _openat2_missing
    if not follow:
        flags |= os.O_NOFOLLOW
    if not _openat2_missing:
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _openat2(rootfd, path.lstrip("/") or ".", flags)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: older seccomp filters
                raise
            _openat2_missing = True
        finally:
            os.close(rootfd)
    host = resolve_in_root(Path(root), path, follow_final=follow)
    return os.open(host, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def open_dir_in_root(root: Path | str, path: str) -> int | None:
    """An O_PATH descriptor of the directory ``path`` names inside ``root`` (resolved as
    if chrooted there, race-free with openat2), or None when there is no directory
    there. For a directory others may change while distill uses it: the descriptor
    stays the directory it was, whatever is renamed or swapped afterwards."""
    try:
        return _open(root, path, True, os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise DistillError(f"cannot open {path}: {e.strerror}") from None


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class NotRegularFileError(DistillError):
    """What a path names is there but is no regular file (``mode``: its st_mode)."""

    def __init__(self, label: str, mode: int) -> None:
        super().__init__(f"{label} is not a regular file: it is {_kind(mode)}")
        self.mode = mode


def open_in_root(root: Path | str, path: str, *, follow: bool = True,
                 what: str | None = None) -> int | None:
    """A read-only descriptor (O_CLOEXEC) of the regular file ``path`` names inside
    ``root`` (resolved as if chrooted there), or None when nothing is there (a dangling
    symlink included). ``follow=False`` refuses a symlink as the last component.

    Raises DistillError naming ``what`` (default ``path``): NotRegularFileError for
    anything but a regular file (a directory, a FIFO, a device...), DistillError for a
    symlink loop or an unreadable file."""
    label = what or path
    if "\0" in path:
        raise DistillError(f"{label}: a path cannot contain a NUL byte")
    try:
        pathfd = _open(root, path, follow, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DistillError(f"{label}: too many levels of symbolic links") from None
        raise DistillError(f"cannot open {label}: {e.strerror}") from None
    try:
        st = os.fstat(pathfd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(label, st.st_mode)
        try:
            try:
                fd = os.open(f"/proc/self/fd/{pathfd}", _READ)
            except FileNotFoundError:  # no procfs: open it again, checked to be the same
                fd = _open(root, path, follow, _READ)
        except OSError as e:
            raise DistillError(f"cannot open {label}: {e.strerror}") from None
    finally:
        os.close(pathfd)
    again = os.fstat(fd)
    if not stat.S_ISREG(again.st_mode) or (again.st_dev, again.st_ino) != (st.st_dev,
                                                                            st.st_ino):
        os.close(fd)
        raise DistillError(f"{label} changed while it was opened")
    return fd


def read_file_in_root(root: Path | str, path: str, limit: int, *, follow: bool = True,
                      what: str | None = None) -> bytes | None:
    """The content of the regular file ``path`` names inside ``root``, at most ``limit``
    bytes (more is a DistillError naming ``what``), or None when there is no such file.
    Opened as :func:`open_in_root` opens it."""
    fd = open_in_root(root, path, follow=follow, what=what)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1) if os.fstat(fd).st_size <= limit else None
    if data is None or len(data) > limit:
        raise DistillError(f"{what or path} is too large: more than {limit} bytes")
    return data


def walk(top: str | os.PathLike[str],
         ) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` (top-down, symlinks to directories listed among the directories
    but not entered, errors raised) without recursion: Python 3.11's ``os.walk`` recurses
    once per level, and a context, an image or a RUN can hold a tree deeper than the
    interpreter's recursion limit. As with ``os.walk``, the caller may prune or reorder
    the directory list it is given; an entry that vanished is left out."""
    pending = [os.fspath(top)]
    while pending:
        current = pending.pop()
        dirs: list[str] = []
        files: list[str] = []
        with os.scandir(current) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(entry.name)
        yield current, dirs, files
        for name in reversed(dirs):
            path = os.path.join(current, name)
            if not os.path.islink(path):
                pending.append(path)
