"""Attack: ``ADD evil.tar /dst/`` whose archive holds names that are not UTF-8: a ustar
name ``caf\\xe9`` and a PAX ``path`` ``\\xff\\xfe/inner\\x80`` (PAX says UTF-8, these
bytes are not), and a symlink whose target is ``caf\\xe9``.

Expect: the build succeeds; the names reach the image byte for byte.

Why: tar names are bytes; an unpacker that decodes them strictly crashes (a traceback)
or mangles them, and one that re-encodes them differently may write another path.
"""
import os

from tests.hostile.harness import Case, Hostile, d, f, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f(b"caf\xe9", b"latin-1\n"), d(b"\xff\xfe"),
                           f(b"\xff\xfe/inner\x80", b"inner\n", pax={"path": b"\xff\xfe/inner\x80"}),
                           sym(b"link", b"caf\xe9")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


def check(h: Hostile) -> None:
    dst = os.fsencode(h.out / "dst")
    with open(os.path.join(dst, b"caf\xe9"), "rb") as got:
        assert got.read() == b"latin-1\n"
    with open(os.path.join(dst, b"\xff\xfe", b"inner\x80"), "rb") as got:
        assert got.read() == b"inner\n"
    assert os.readlink(os.path.join(dst, b"link")) == b"caf\xe9"


CASE = Case(attack="ADD archive with non-UTF-8 member names (ustar and PAX) and link target",
            outcome="builds; names copied byte for byte",
            setup=setup, check=check)
