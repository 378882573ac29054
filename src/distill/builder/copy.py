"""COPY into a mounted root filesystem with Docker's directory rules.

* a directory source copies its contents, not itself;
* a file goes to DEST/name when DEST ends in '/' or is an existing directory, else to DEST;
  a symlink at DEST is followed (the file is written to its target, as BuildKit's fsutil
  resolves DEST in full), except with --link, which copies onto an empty layer;
* several sources need a DEST ending in '/';
* owners: --chown, else 0:0 from the context, else the source's owner (from a stage);
* --chmod applies to every copied file and directory; mtimes are kept; hardlinks stay linked;
* --exclude patterns (.dockerignore syntax) match paths relative to each source's copy root
  (``Source.base_rel``): what they match is not copied;
* --parents keeps each source's path relative to its copy root (the context root, the
  --from root, or the ``/./`` pivot) under DEST, parent directories with their metadata.
Destination paths resolve inside the root, so symlinks in base layers never lead out of it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distill.builder.sources import Source
from distill.confine import make_dirs, relative_inside, resolve_in_root, walk
from distill.dockerfile.kernel import check_owner, check_path
from distill.errors import ContextError
from distill.ignore import PatternMatcher
from distill.sandbox import rootless


@dataclass(frozen=True)
class CopyOptions:
    owner: tuple[int, int] | None = None     # None: keep the source's owner
    mode: int | None = None                  # --chmod
    allow: Callable[[Path], bool] | None = None   # source filter (.dockerignore)
    exclude: PatternMatcher | None = None    # --exclude
    parents: bool = False                    # --parents
    follow_dest_link: bool = True            # False for --link: a symlink at DEST is replaced

    def __post_init__(self) -> None:
        if self.owner is not None:   # --chown or USER: an id chown(2) can set
            check_owner(self.owner)


class Copier:
    def __init__(self, dest_root: Path, opts: CopyOptions) -> None:
        self.root = dest_root
        self.opts = opts
        self.links: dict[tuple[int, int], Path] = {}

    def owner(self, st: os.stat_result) -> tuple[int, int]:
        return self.opts.owner if self.opts.owner is not None else (st.st_uid, st.st_gid)

    def mode(self, st: os.stat_result) -> int:
        return self.opts.mode if self.opts.mode is not None else stat.S_IMODE(st.st_mode)

    def ensure_dir(self, path: str, created_owner: tuple[int, int]) -> Path:
        """mkdir -p inside the root. New directories are owned by created_owner, with the
        --chmod mode if given, else 0755 (BuildKit's MkdirAll); existing ones are kept."""
        mode = self.opts.mode if self.opts.mode is not None else 0o755
        try:
            return make_dirs(self.root, path, mode=mode, owner=created_owner)
        except NotADirectoryError as e:
            raise ContextError(f"cannot copy to non-directory: {e.filename}") from None

    def copy_entry(self, src: Path, dst: Path, st: os.stat_result) -> None:
        """Copy one non-directory entry to host path dst (replacing what is there)."""
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise ContextError(f"cannot overwrite directory {dst.relative_to(self.root)} "
                               "with a non-directory")
        if os.path.lexists(dst):
            os.unlink(dst)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            os.link(self.links[key], dst)
            return
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dst, follow_symlinks=False)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(dst)
        elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and rootless.active():
            return  # a user namespace may not make device nodes (nor does unpacking one)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(dst, st.st_mode, st.st_rdev)
        else:
            return  # sockets are skipped, as Docker does
        rootless.chown(dst, *self.owner(st), what=f"the copy of {src.name!r}")
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, self.mode(st))
        os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        if st.st_nlink > 1:
            self.links[key] = dst

    def copy_tree(self, src: Path, dst_path: str, created_owner: tuple[int, int],
                  allow: Callable[[Path], bool] | None = None) -> None:
        """Copy the contents of directory src into dst_path (a path inside the root).

        Existing directories on the way are kept and followed, symlinks to directories
        included (resolved inside the root), so `COPY rootfs/ /` keeps /lib -> usr/lib.
        """
        self.ensure_dir(dst_path, created_owner)
        allow = allow if allow is not None else self.opts.allow
        dir_times: list[tuple[Path, int]] = []
        for dirpath, dirnames, filenames in walk(src):
            rel = os.path.relpath(dirpath, src)
            base = dst_path if rel == "." else posixpath.join(dst_path, rel)
            if allow is not None:
                dirnames[:] = [d for d in dirnames if allow(Path(dirpath, d))]
                filenames = [f for f in filenames if allow(Path(dirpath, f))]
            for name in sorted(dirnames):
                s = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISLNK(s.st_mode):
                    leaf = resolve_in_root(self.root, posixpath.join(base, name),
                                           follow_final=False)
                    self.copy_entry(Path(dirpath, name), leaf, s)
                    continue
                target = resolve_in_root(self.root, posixpath.join(base, name))
                if os.path.lexists(target) and not os.path.isdir(target):
                    os.unlink(target)
                if not os.path.lexists(target):
                    os.mkdir(target, 0o700)
                self._apply_dir_meta(target, s, dir_times)
            dirnames[:] = sorted(d for d in dirnames
                                 if not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                s = os.lstat(os.path.join(dirpath, name))
                leaf = resolve_in_root(self.root, posixpath.join(base, name), follow_final=False)
                self.copy_entry(Path(dirpath, name), leaf, s)
        for path, mtime in reversed(dir_times):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def _apply_dir_meta(self, path: Path, st: os.stat_result,
                        dir_times: list[tuple[Path, int]]) -> None:
        rootless.chown(path, *self.owner(st), what=f"the directory {path.name!r}")
        os.chmod(path, self.mode(st))
        dir_times.append((path, st.st_mtime_ns))


def _source_filter(source: Source, opts: CopyOptions) -> Callable[[Path], bool] | None:
    """.dockerignore and --exclude for the entries inside ``source``."""
    ignore, exclude = opts.allow, opts.exclude
    if exclude is None:
        return ignore

    def allow(path: Path) -> bool:
        if ignore is not None and not ignore(path):
            return False
        return not exclude.matches_or_parent_matches(source.path_from_base(path))

    return allow


def _excluded(source: Source, opts: CopyOptions) -> bool:
    top = source.path_from_base()
    return (opts.exclude is not None and top != "."
            and opts.exclude.matches_or_parent_matches(top))


def _copy_with_parents(copier: Copier, source: Source, dest: str, st: os.stat_result,
                       allow: Callable[[Path], bool] | None,
                       created_owner: tuple[int, int]) -> None:
    """--parents: ``source`` goes to DEST/<its path from its copy root>; the directories
    on the way are created like the source's (mode, owner rules, mtime)."""
    rel = source.path_from_base()
    target = dest if rel == "." else posixpath.join(dest, rel)
    copier.ensure_dir(dest, created_owner)
    parts = [] if rel == "." else rel.split("/")
    is_dir = stat.S_ISDIR(st.st_mode)
    dirs = parts if is_dir else parts[:-1]
    dir_times: list[tuple[Path, int]] = []
    current = dest
    for i, part in enumerate(dirs):
        current = posixpath.join(current, part)
        if source.root is not None:  # as the path names it, never above the root
            src_dir = resolve_in_root(source.root,
                                      posixpath.join(source.base_rel, *parts[:i + 1]))
        else:
            src_dir = source.host
            for _ in range(len(parts) - 1 - i):
                src_dir = src_dir.parent
        host = resolve_in_root(copier.root, current)
        if os.path.isdir(host):
            continue
        if os.path.lexists(host):
            raise ContextError(f"cannot copy to non-directory: {current}")
        if not os.path.isdir(host.parent):    # a dangling symlink: make what it names
            copier.ensure_dir(relative_inside(copier.root, host.parent), created_owner)
        os.mkdir(host, 0o700)
        copier._apply_dir_meta(host, os.stat(src_dir), dir_times)
    if is_dir:
        copier.copy_tree(source.host, target, created_owner, allow)
    else:
        leaf = resolve_in_root(copier.root, target, follow_final=False)
        copier.copy_entry(source.host, leaf, st)
    for path, mtime in reversed(dir_times):
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def copy_sources(dest_root: Path, sources: list[Source], dest: str, opts: CopyOptions,
                 dest_is_dir: bool | None = None) -> None:
    """Copy resolved sources to absolute path ``dest`` inside ``dest_root``.

    ``dest_is_dir`` (default: DEST ends in '/' or there are several sources) says whether
    a file goes *into* DEST; pass it when one COPY copies its sources in several calls."""
    check_path(dest, "destination")
    copier = Copier(dest_root, opts)
    created_owner = opts.owner or (0, 0)
    if dest_is_dir is None:
        dest_is_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        if _excluded(source, opts):
            continue
        allow = _source_filter(source, opts)
        st = os.lstat(source.host)
        if opts.parents:
            _copy_with_parents(copier, source, dest, st, allow, created_owner)
            continue
        if stat.S_ISDIR(st.st_mode):
            copier.copy_tree(source.host, dest, created_owner, allow)
            continue
        host_dest = resolve_in_root(dest_root, dest, follow_final=opts.follow_dest_link)
        if dest_is_dir or (os.path.isdir(host_dest) and not os.path.islink(host_dest)
                           and dest != "/"):
            copier.ensure_dir(dest, created_owner)
            into = check_path(os.path.join(dest, os.path.basename(source.rel)), "destination")
            target = resolve_in_root(dest_root, into, follow_final=False)
        elif dest == "/":
            raise ContextError("cannot copy a file onto '/'")
        else:
            target = resolve_in_root(dest_root, dest, follow_final=opts.follow_dest_link)
            copier.ensure_dir(relative_inside(dest_root, target.parent), created_owner)
        copier.copy_entry(source.host, target, st)
