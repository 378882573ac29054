"""``--output type=local``: an image's root filesystem written into a host directory.

The result is safe to unpack as root. By default:

* device nodes are not created (an image's ``/dev/sda`` would be the host's disk, open to
  whoever the node's mode lets in); ``devices=true`` creates them;
* setuid and setgid bits are cleared on everything but directories (an image's setuid-root
  file would give any host user root); ``setuid=true`` keeps them. A file is never
  setuid on the host, even for a moment, unless asked: its mode is set once, after its
  owner and content.

Both are reported (:class:`LocalReport`), so the caller can say what was left out.
Rootless, files belong to the user running distill (as BuildKit's client writes a rootless
build's local output): the image's owners would be subordinate ids the user could not
read or remove. Owners, modes, mtimes, symlinks, hardlinks and FIFOs are kept; sockets are skipped, as
Docker does. Paths in ``dest`` resolve inside it (a symlink already there never leads
out), as COPY resolves its destination.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from distill.confine import resolve_in_root, walk
from distill.errors import ImageError

_SETID = stat.S_ISUID | stat.S_ISGID


@dataclass
class LocalReport:
    """What the export left out: device nodes not created, files whose setid bits went."""

    devices: list[str] = field(default_factory=list)
    setid: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = []
        if self.devices:
            out.append(f"--output type=local: {_count(self.devices, 'device node')} not "
                       f"created ({_some(self.devices)}); add devices=true to create them")
        if self.setid:
            out.append(f"--output type=local: setuid/setgid bits cleared on "
                       f"{_count(self.setid, 'file')} ({_some(self.setid)}); "
                       "add setuid=true to keep them")
        return out


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _some(paths: list[str], shown: int = 3) -> str:
    head = ", ".join(paths[:shown])
    return head + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


@dataclass
class _Exporter:
    root: Path
    dest: Path
    devices: bool
    setid: bool
    #: give files the image's owners (False rootless: they stay the user's)
    owners: bool = True
    report: LocalReport = field(default_factory=LocalReport)
    links: dict[tuple[int, int], Path] = field(default_factory=dict)
    dir_times: list[tuple[Path, int]] = field(default_factory=list)
    #: where each directory written so far is (a real directory, checked when made), so
    #: that a path is resolved from its parent's place, not again from ``dest`` (which
    #: cost O(depth) per level: minutes for a tree 1000 levels deep)
    placed: dict[str, Path] = field(default_factory=dict)

    def _inside(self, rel: str, *, follow_final: bool) -> Path:
        """``rel`` resolved inside ``dest``, as ``resolve_in_root`` resolves it."""
        parent = self.placed.get(posixpath.dirname(rel))
        if parent is not None:
            candidate = parent / posixpath.basename(rel)
            if not follow_final or not os.path.islink(candidate):
                return candidate
        return resolve_in_root(self.dest, rel, follow_final=follow_final)

    def mode(self, st: os.stat_result, rel: str) -> int:
        mode = stat.S_IMODE(st.st_mode)
        if mode & _SETID and not stat.S_ISDIR(st.st_mode) and not self.setid:
            self.report.setid.append(rel)
            mode &= ~_SETID
        return mode

    def directory(self, src: Path, rel: str) -> bool:
        """Make the directory ``rel``; False when ``src`` is not there after all."""
        st = _lstat(src)
        if st is None:
            return False
        target = self._inside(rel, follow_final=True)
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        if not os.path.lexists(target):
            os.mkdir(target, 0o700)
        if not os.path.islink(target):
            self.placed[rel] = target
        self.own(target, st)
        os.chmod(target, self.mode(st, rel))
        self.dir_times.append((target, st.st_mtime_ns))
        return True

    def entry(self, src: Path, rel: str) -> None:
        """Copy one non-directory (a symlink to a directory included)."""
        st = _lstat(src)
        if st is None or stat.S_ISSOCK(st.st_mode):
            return
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and not self.devices:
            self.report.devices.append(rel)
            return
        leaf = self._inside(rel, follow_final=False)
        if os.path.isdir(leaf) and not os.path.islink(leaf):
            raise ImageError(f"--output dest={self.dest}: cannot replace the directory "
                             f"{rel} with a non-directory")
        if os.path.lexists(leaf):
            os.unlink(leaf)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], leaf, follow_symlinks=False)
            return
        if stat.S_ISREG(st.st_mode):
            self.regular(src, leaf, st, rel)
        else:
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), leaf)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(leaf, 0o600)
            else:  # a device node, with devices=true
                kind = stat.S_IFCHR if stat.S_ISCHR(st.st_mode) else stat.S_IFBLK
                os.mknod(leaf, kind | 0o600, st.st_rdev)
            self.own(leaf, st)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(leaf, self.mode(st, rel))
        os.utime(leaf, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        if st.st_nlink > 1:
            self.links[key] = leaf

    def own(self, target: Path | int, st: os.stat_result) -> None:
        if not self.owners:
            return
        if isinstance(target, int):
            os.fchown(target, st.st_uid, st.st_gid)
        else:
            os.lchown(target, st.st_uid, st.st_gid)

    def regular(self, src: Path, leaf: Path, st: os.stat_result, rel: str) -> None:
        fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fout = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600)
            try:
                _copy_fd(fin, fout)
                self.own(fout, st)  # clears setid bits: mode comes last
                os.fchmod(fout, self.mode(st, rel))
            finally:
                os.close(fout)
        finally:
            os.close(fin)


def _lstat(path: Path) -> os.stat_result | None:
    """An entry's lstat, or None for one overlayfs lists but cannot stat: a whiteout in a
    directory only one layer holds (the kernel lists it, then hides it), as containerd's
    snapshots show it too."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _copy_fd(fin: int, fout: int) -> None:
    offset = 0
    while True:
        try:
            sent = os.sendfile(fout, fin, offset, 1 << 30)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS) or offset:
                raise
            break
        if sent == 0:
            return
        offset += sent
    while chunk := os.read(fin, 1 << 20):  # sendfile refused these files
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view):]


def export_rootfs(root: Path, dest: Path, *, devices: bool = False,
                  setid: bool = False, owners: bool = True) -> LocalReport:
    """Write the tree at ``root`` (a mounted image) into the directory ``dest``; with
    ``owners=False``, everything belongs to the user running distill."""
    ex = _Exporter(root, dest, devices, setid, owners)
    dest.mkdir(parents=True, exist_ok=True)
    ex.placed["/"] = resolve_in_root(dest, "/")
    for dirpath, dirnames, filenames in walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        base = "/" if rel_dir == "." else "/" + rel_dir
        real_dirs = []
        for name in sorted(dirnames):
            rel = posixpath.join(base, name)
            src = Path(dirpath, name)
            if os.path.islink(src):
                ex.entry(src, rel)   # a symlink to a directory: copied as a link
            elif ex.directory(src, rel):
                real_dirs.append(name)
        dirnames[:] = real_dirs
        for name in sorted(filenames):
            ex.entry(Path(dirpath, name), posixpath.join(base, name))
    for path, mtime in reversed(ex.dir_times):
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    return ex.report
