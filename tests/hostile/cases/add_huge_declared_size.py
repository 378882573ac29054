"""Attack: ``ADD evil.tar /dst/`` whose archive declares a 40 GiB file with no data
behind it.

Expect: a clear error, "takes the archive past 32 GiB" (distill.limits: max_bytes).

Why: the declared size is checked before the first byte is written; a truncated
archive that declares terabytes never reaches the disk.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f("huge", size=40 << 30)))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive entry declaring 40 GiB with no data",
            outcome="refused: `takes the archive past 32 GiB` (limits.py)",
            setup=setup, error="takes the archive past 32 GiB")
