"""Attack: ``ADD evil.tar.gz /dst/``: a 65 KB gzip tar whose first header is a PAX
extended header of 64 MiB (one ``comment`` record), then an ordinary file. Not a ratio
bomb (it stays under the 1 GiB grace), and under max_bytes: only the header's size is
hostile. Scaled up (a 30 GiB header in a 200:1-compressed archive, under every limit)
it exhausts the build host's memory.

Expect: a clear error naming the limit on extended headers, "extended header" (Go's
archive/tar, which BuildKit and containerd use, refuses PAX and GNU long-name headers
over 1 MiB); nothing is buffered beyond that limit.

Why: distill's unpackers read with Python's tarfile, which reads an extended header
whole into memory and decodes it (several copies) before any limit sees a member: 64
MiB costs ~300 MB of memory and seconds; 256 MiB took 1 GB and 10 s.
"""
from tests.hostile.harness import Case, Hostile, f, pax_header_bomb, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar.gz", pax_header_bomb(64 << 20, tar(f("a", b"a\n"))))
    h.dockerfile("FROM busybox:latest\nADD evil.tar.gz /dst/\n")


CASE = Case(attack="ADD archive whose PAX extended header is 64 MiB (65 KB gzip)",
            outcome="refused: `extended header` over 1 MiB (as Go's archive/tar)",
            setup=setup, error="extended header")
