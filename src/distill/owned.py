"""Temporary directories named after the process that owns them.

A build killed with SIGKILL runs no cleanup: a secret it had written for a RUN stays in
/dev/shm, the directory it mounted a RUN's root under stays in /run. Each such directory
is named ``PREFIX<pid>-<start time>-<random>``, and the next distill removes those whose
process is gone (a pid reused since has another start time).
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def process_tag(pid: int) -> str:
    """'<pid>-<start time>': unique for a process's whole life, even across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return f"{pid}-{fields[19]}"
    except (OSError, IndexError):
        return f"{pid}-0"


def is_alive(tag: str) -> bool:
    """Whether the process ``tag`` (from :func:`process_tag`) is still running."""
    pid, sep, _ = tag.partition("-")
    return not sep or not pid.isdigit() or tag == process_tag(int(pid))


def make_dir(prefix: str, parent: str | Path) -> Path:
    """A fresh 0700 directory in ``parent`` named for this process."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{process_tag(os.getpid())}-", dir=parent))


def sweep(prefix: str, parent: str | Path, remove: Callable[[Path], None], *,
          private: bool = True) -> None:
    """``remove`` every directory ``make_dir(prefix, parent)`` made for a process that is
    gone. Only directories of this user are considered, and with ``private`` only those
    no one else may enter (0700, as made): in a world-writable parent anyone can make a
    directory with any name."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    uid = os.geteuid()
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid, _, rest = entry.name[len(prefix):].partition("-")
        start = rest.partition("-")[0]
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (stat.S_ISDIR(st.st_mode) and st.st_uid == uid
                and (not private or st.st_mode & 0o077 == 0) and not is_alive(f"{pid}-{start}")):
            with suppress(OSError):
                remove(Path(entry.path))


@contextmanager
def temp_dir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """``tempfile.TemporaryDirectory`` named for this process (in ``parent``, default the
    temporary directory), whose leftovers from killed builds the first use in a process
    removes. The directory may be opened to others later (as ADD's is for the jailed
    git); only this user's directories are ever removed."""
    where = str(parent or tempfile.gettempdir())
    _sweep_temp(prefix, where)
    path = make_dir(prefix, where)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@functools.cache
def _sweep_temp(prefix: str, parent: str) -> None:
    sweep(prefix, parent, lambda path: shutil.rmtree(path, ignore_errors=True), private=False)
