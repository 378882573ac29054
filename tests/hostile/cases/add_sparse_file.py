"""Attack: ``ADD evil.tar /dst/`` whose archive holds an old-GNU sparse entry declaring
1 TiB (512 bytes stored).

Expect: a clear error, "is a sparse file" (distill.limits).

Why: as for layers: ADD unpacks under the same limits, and a sparse member is the
cheapest way to declare a huge file.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f("huge", b"x" * 512, sparse_size=1 << 40)))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive with a GNU sparse entry declaring 1 TiB",
            outcome="refused: `is a sparse file` (limits.py)",
            setup=setup, error="is a sparse file")
