"""Attack: a build context holding a FIFO (nobody writes to it), copied whole with
``COPY . /ctx/``.

Expect: the build finishes (no hang: the runner kills it after 120 s) and succeeds; the
FIFO is copied as a FIFO, never opened (BuildKit copies a FIFO as a FIFO).

Why: opening a FIFO for reading blocks until a writer comes: a build that reads context
files to hash or copy them hangs forever on one.
"""
import os
import stat

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("regular", b"regular\n")
    os.mkfifo(h.ctx / "pipe")
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\nRUN test -p /ctx/pipe && echo fifo > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "ctx" / "regular").read_bytes() == b"regular\n"
    assert (h.out / "seen").read_bytes() == b"fifo\n"
    assert stat.S_ISFIFO(os.lstat(h.out / "ctx" / "pipe").st_mode)


CASE = Case(attack="context with a FIFO, `COPY . /ctx/`",
            outcome="builds without hanging; the FIFO is copied as a FIFO",
            setup=setup, check=check)
