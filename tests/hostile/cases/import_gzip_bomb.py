"""Attack: ``distill import`` of a gzip bomb as a root filesystem tarball: about 1.4 MB
of gzip that inflates to a tar of 1.06 GiB of zeros.

Expect: ``distill import`` fails with a clear error, "refusing a decompression bomb"
(distill.limits: 256 times past the 1 GiB grace); no image is made (``store verify``
finds the store consistent, with nothing half-written).

Why: ``import`` recompresses the tarball into the store, reading all of it: the limit
must apply there too, before the store fills.
"""
from tests.hostile.harness import Case, Hostile, gzip_bomb


def setup(h: Hostile) -> None:
    path = h.tmp / "bomb.tar.gz"
    path.write_bytes(gzip_bomb(1088 << 20))
    h.command = ["import", str(path), "bomb:1"]


CASE = Case(attack="`distill import` of a gzip bomb (1.4 MB -> 1.06 GiB)",
            outcome="`import` refuses it: `refusing a decompression bomb`",
            setup=setup, error="refusing a decompression bomb")
