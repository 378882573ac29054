"""Content digests of context files, through a stat cache.

A file's sha256 is remembered with what ``lstat`` says of it (device, inode, size, mode,
mtime and ctime in nanoseconds), as git's index and BuildKit's contenthash remember
theirs: a rebuild stats the files a step reads and hashes only those whose stat changed.
ctime cannot be set by a user, so a write that restores size and mtime is still seen.

A file changed within the clock's granularity of being hashed could keep all of its stat
fields (git's "racy clean" case), so an entry is remembered only when the file's ctime is
older than :data:`RACY_NS` before the hash began; younger files are hashed every time.

The cache is one JSON file per build context under ``STORE/contenthash/``, written
atomically at the end of a build (a lost write costs only a re-hash). Keys of steps
never depend on mtimes: the cache only decides whether bytes must be read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from distill.confine import open_in_root
from distill.errors import ContextError

RACY_NS = 2_000_000_000
#: entries kept across builds (a context larger than this is re-hashed in part)
MAX_ENTRIES = 500_000

StatKey = tuple[int, int, int, int, int, int]


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


class ContentHashes:
    """File digests by path and stat; ``save`` keeps them for the next build."""

    def __init__(self, cache_file: Path | None = None, temp_dir: Path | None = None) -> None:
        self.cache_file = cache_file
        self.temp_dir = temp_dir      # for the file being saved: the store's, for this process
        self._lock = threading.Lock()
        self._started = time.time_ns()
        self._old: dict[str, list[object]] = {}
        self._new: dict[str, list[object]] = {}
        self.hashed = 0                    # files read this build (for tests and bench)
        if cache_file is not None:
            try:
                loaded = json.loads(cache_file.read_bytes().decode("utf-8", "surrogatepass"))
                if isinstance(loaded, dict):
                    self._old = loaded
            except (OSError, ValueError):
                pass

    def file_digest(self, host: str, st: os.stat_result, shown: str) -> str:
        """The sha256 of the regular file at ``host`` (whose lstat is ``st``)."""
        key = _stat_key(st)
        with self._lock:
            known = self._new.get(host) or self._old.get(host)
        if known is not None and tuple(known[:6]) == key and isinstance(known[6], str):
            with self._lock:
                self._new[host] = known
            return known[6]
        # opened as it was seen: no symlink swapped in, and the same inode
        fd = open_in_root(os.path.dirname(host), os.path.basename(host), follow=False,
                          what=shown)
        if fd is None:
            raise ContextError(f"{shown} vanished while it was read")
        h = hashlib.sha256()
        with os.fdopen(fd, "rb") as f:
            seen = os.fstat(f.fileno())
            while block := f.read(1 << 20):
                h.update(block)
        digest = h.hexdigest()
        with self._lock:
            self.hashed += 1
            if (seen.st_dev, seen.st_ino) == key[:2] and \
                    seen.st_ctime_ns < self._started - RACY_NS:
                self._new[host] = [*key, digest]
        return digest

    def walk_digest(self, entries: Iterable[tuple[str, str, os.stat_result]]) -> str:
        """One digest over (shown name, host path, lstat) entries: names, types, modes,
        owners, link targets and file contents (never times)."""
        h = hashlib.sha256()
        for name, host, st in entries:
            h.update(f"{name}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode(
                "utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(host)))
            elif stat.S_ISREG(st.st_mode):
                h.update(self.file_digest(host, st, name).encode())
            h.update(b"\n")
        return h.hexdigest()

    def save(self) -> None:
        """Keep this build's entries (and older ones, up to MAX_ENTRIES) for the next."""
        if self.cache_file is None:
            return
        with self._lock:
            if not self._new or all(self._old.get(k) == v for k, v in self._new.items()):
                return
            merged = {**self._old, **self._new}
            if len(merged) > MAX_ENTRIES:
                merged = dict(self._new)
        tmp = (self.temp_dir or self.cache_file.parent) / \
            f".{self.cache_file.name}.{os.getpid()}.tmp"
        try:
            self.cache_file.parent.mkdir(mode=0o700, exist_ok=True)
            tmp.write_bytes(json.dumps(merged, separators=(",", ":"),
                                       ensure_ascii=False).encode("utf-8", "surrogatepass"))
            os.replace(tmp, self.cache_file)
        except OSError:
            tmp.unlink(missing_ok=True)   # only a cache: the next build hashes again
