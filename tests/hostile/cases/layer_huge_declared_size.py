"""Attack: a base layer whose regular file declares 40 GiB in its header with nothing
behind it (a tar "bomb" by declaration: the archive is a few blocks).

Expect: a clear error, "takes the archive past 32 GiB" (distill.limits: max_bytes, the
sum of declared sizes, checked before any byte of the entry is written).

Why: an unpacker that trusts a declared size allocates or writes it; the limit stops it
before the first write.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("huge", size=40 << 30)))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer entry declaring 40 GiB with no data",
            outcome="refused: `takes the archive past 32 GiB` (limits.py)",
            setup=setup, error="takes the archive past 32 GiB")
