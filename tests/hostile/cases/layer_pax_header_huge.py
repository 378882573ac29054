"""Attack: a base layer (gzip, 65 KB) whose first header is a PAX extended header of
64 MiB (one ``comment`` record), then an ordinary file; its diff_id is true. Under
every limit of distill.limits (no ratio bomb, under max_bytes); scaled up (a 30 GiB
header in a 200:1-compressed layer) it exhausts the build host's memory.

Expect: a clear error naming the limit on extended headers, "extended header" (Go's
archive/tar, which containerd uses to unpack layers, refuses headers over 1 MiB).

Why: Python's tarfile reads an extended header whole into memory before its member
is seen; distill.limits refuses one over 1 MiB before it is read (a regression test:
such a header was read whole).
"""
from tests.hostile.harness import Case, Hostile, f, pax_header_bomb, tar


def setup(h: Hostile) -> None:
    h.layout(pax_header_bomb(64 << 20, tar(f("a", b"a\n"))))
    h.dockerfile("FROM base\nRUN cat /a\n")


CASE = Case(attack="base layer whose PAX extended header is 64 MiB (65 KB gzip)",
            outcome="refused: `extended header` over 1 MiB (as Go's archive/tar)",
            setup=setup, error="extended header")
