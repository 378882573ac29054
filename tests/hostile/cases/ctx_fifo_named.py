"""Attack: ``COPY pipe /pipe`` where the context's ``pipe`` is a FIFO nobody writes to:
the one source is the FIFO itself.

Expect: the build finishes (no hang) and succeeds; ``/pipe`` is a FIFO in the image,
never opened.

Why: naming the FIFO directly takes another path than a directory walk (stat of one
source, checksum of its content): it must not open the FIFO either.
"""
import os
import stat

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.mkfifo(h.ctx / "pipe")
    h.dockerfile("FROM busybox:latest\nCOPY pipe /pipe\n")


def check(h: Hostile) -> None:
    assert stat.S_ISFIFO(os.lstat(h.out / "pipe").st_mode)


CASE = Case(attack="`COPY pipe /pipe` of a FIFO nobody writes to",
            outcome="builds without hanging; `/pipe` is a FIFO",
            setup=setup, check=check)
