"""Attack: an OCI layout whose manifest claims a layer of 2^62 bytes (the blob is a few
KiB).

Expect: a clear error naming the layout, "but its descriptor says": no allocation, no
read of that size.

Why: a size is a number an attacker picks; it may only be compared, never used to
allocate or preallocate.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")), save=False)
    lay.manifest["layers"][1]["size"] = 1 << 62
    lay.save()
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: a layer descriptor claiming 2^62 bytes",
            outcome="refused: `… but its descriptor says 4611686018427387904`",
            setup=setup, error="but its descriptor says 4611686018427387904")
