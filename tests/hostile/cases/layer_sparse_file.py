"""Attack: a base layer holding an old-GNU sparse entry ('S') of 512 stored bytes that
declares a real size of 1 TiB.

Expect: a clear error, "is a sparse file" (distill.limits: sparse entries are refused).

Why: a sparse member is the cheapest way to declare a huge file; unpacking it as a
regular file would write a terabyte of zeros into the store.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("huge", b"x" * 512, sparse_size=1 << 40)))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer with a GNU sparse entry declaring 1 TiB",
            outcome="refused: `is a sparse file` (limits.py)",
            setup=setup, error="is a sparse file")
