"""What running processes use, so that a prune beside them keeps it.

A build reads blobs no name reaches (layers of earlier builds found through the cache,
blobs it has just written and not yet tagged) and mounts snapshots; ``distill prune``
may run at the same time and removes what no tagged image reaches. So every store user
*pins* what it is about to use: one line per blob (``blob:HEX``) or snapshot
(``snapshot:HEX``) appended to its own file under ``STORE/pins/``, named for the
process (``distill/owned.py``), and only then looks whether the thing is there. Prune
reads the pins of every living process and keeps what they name.

The two sides meet under ``pins.lock``: pinning holds it shared for the moment of the
append, prune holds it exclusively from reading the pins until its last removal. So
either the pin is written first and prune sees it, or prune finishes first and the pinning
process then finds the thing gone (and makes it again, as on a cache miss). A pin lasts
as long as its process: files of dead processes are removed by the next store user.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from distill.owned import is_alive, process_tag
from distill.store.names import read_record

_LOCK = "pins.lock"
#: a pin file's name: the process tag of its process (``owned.process_tag``)
_PROCESS = re.compile(r"[0-9]+-[0-9]+")


class Pins:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self._name = process_tag(os.getpid())
        self._fd: int | None = None
        self._pinned: set[str] = set()
        self._mutex = threading.Lock()      # a flock is shared by the threads of a process
        self._remove_dead()

    def pin(self, kind: str, hexdigest: str) -> None:
        """Keep ``kind:hexdigest`` from every prune while this process lives; callers
        look whether the thing exists *after* pinning it."""
        entry = f"{kind}:{hexdigest}"
        if entry in self._pinned:
            return
        with self._mutex:
            if entry in self._pinned:
                return
            if self._fd is None:
                self._fd = os.open(self.dir / self._name,
                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with self._flock(fcntl.LOCK_SH):
                os.write(self._fd, f"{entry}\n".encode())
            self._pinned.add(entry)

    @contextmanager
    def _flock(self, how: int) -> Iterator[None]:
        fd = os.open(self.dir / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def held_exclusively(self) -> Iterator[set[str]]:
        """For prune: every ``kind:hex`` another living process has pinned, with no new
        pin possible until the block ends (this process must pin nothing meanwhile: its
        own pin would wait for the block's end)."""
        with self._flock(fcntl.LOCK_EX):
            pinned: set[str] = set()
            for entry in os.scandir(self.dir):
                if entry.name in (_LOCK, self._name):
                    continue
                if not _PROCESS.fullmatch(entry.name) or not is_alive(entry.name):
                    _discard(Path(entry.path))      # a dead process's, or no pins at all
                    continue
                with suppress(OSError, ValueError):
                    pinned.update(read_record(Path(entry.path)).decode().split())
            yield pinned

    def _remove_dead(self) -> None:
        for entry in os.scandir(self.dir):
            if entry.name != _LOCK and (not _PROCESS.fullmatch(entry.name)
                                        or not is_alive(entry.name)):
                _discard(Path(entry.path))


def _discard(path: Path) -> None:
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
