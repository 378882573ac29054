"""Attack: ``ADD bomb.tar.gz /dst/``: about 1.4 MB of gzip that inflates to a tar of
1.06 GiB of zeros.

Expect: a clear error, "refusing a decompression bomb" (distill.limits: 256 times past
the 1 GiB grace).

Why: ADD unpacks any local archive it recognises; the ratio limit stops the bomb before
the image (and the store) fills.
"""
from tests.hostile.harness import Case, Hostile, gzip_bomb


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("bomb.tar.gz", gzip_bomb(1088 << 20))
    h.dockerfile("FROM busybox:latest\nADD bomb.tar.gz /dst/\n")


CASE = Case(attack="ADD gzip bomb (1.4 MB -> 1.06 GiB)",
            outcome="refused: `… refusing a decompression bomb` (limits.py)",
            setup=setup, error="refusing a decompression bomb")
