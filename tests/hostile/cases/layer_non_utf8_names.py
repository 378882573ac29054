"""Attack: a base layer with names that are not UTF-8: ``caf\\xe9`` (ustar), a PAX
``path`` of ``\\xff\\xfe/inner\\x80`` and a symlink whose target is ``caf\\xe9``; a RUN
then lists them.

Expect: the build succeeds; the names are in the image byte for byte (the RUN reads
the file through the link).

Why: as for contexts: names are bytes; decoding them strictly is a crash, re-encoding
them is a different path.
"""
import os

from tests.hostile.harness import Case, Hostile, d, f, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f(b"caf\xe9", b"latin-1\n"), d(b"\xff\xfe"),
                 f(b"\xff\xfe/inner\x80", b"inner\n", pax={"path": b"\xff\xfe/inner\x80"}),
                 sym(b"link", b"caf\xe9")))
    h.dockerfile("FROM base\nRUN cat /link > /seen\n")


def check(h: Hostile) -> None:
    out = os.fsencode(h.out)
    assert (h.out / "seen").read_bytes() == b"latin-1\n"
    with open(os.path.join(out, b"\xff\xfe", b"inner\x80"), "rb") as got:
        assert got.read() == b"inner\n"
    assert os.readlink(os.path.join(out, b"link")) == b"caf\xe9"


CASE = Case(attack="base layer with non-UTF-8 names (ustar and PAX) and link target",
            outcome="builds; names kept byte for byte",
            setup=setup, check=check)
