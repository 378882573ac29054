"""Waiting for the clock, by condition rather than by a fixed sleep."""

from __future__ import annotations

import os
import time
from pathlib import Path

from distill.builder.memo import RACY_NS


def settled(*paths: Path) -> None:
    """Return once every file under ``paths`` changed longer ago than the racy-clean
    window (builder/memo.py): a build of them may then leave a record."""
    def newest() -> int:
        out = 0
        for path in paths:
            for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
                out = max(out, os.lstat(p).st_ctime_ns)
        return out

    while newest() >= time.time_ns() - RACY_NS:
        time.sleep(0.05)


def next_second() -> None:
    """Return once the wall clock shows another second than when called."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.02)
