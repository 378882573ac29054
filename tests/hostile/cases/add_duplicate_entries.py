"""Attack: ``ADD evil.tar /dst/`` whose archive has duplicate entries: ``dup`` twice,
``x`` a directory (with a child) then a file, ``y`` a file then a directory, and ``z``
a symlink to the canary then a regular file of the same name.

Expect: the build succeeds and the last entry wins, as tar extracts: ``dup`` is
"second", ``x`` a file, ``y`` a directory with ``inner``, ``z`` a regular file (written
in place of the link, not through it).

Why: replacing an entry must remove the old one, never write through it (a symlink
left in place would lead the second ``z`` to the host).
"""
from tests.hostile.harness import Case, Hostile, d, f, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f("dup", b"first\n"), f("dup", b"second\n"),
                           d("x"), f("x/child", b"gone\n"), f("x", b"file now\n"),
                           f("y", b"file first\n"), d("y"), f("y/inner", b"in\n"),
                           sym("z", str(h.canary / "secret")), f("z", b"z\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


def check(h: Hostile) -> None:
    dst = h.out / "dst"
    assert (dst / "dup").read_bytes() == b"second\n"
    assert (dst / "x").read_bytes() == b"file now\n"
    assert (dst / "y" / "inner").read_bytes() == b"in\n"
    assert not (dst / "z").is_symlink() and (dst / "z").read_bytes() == b"z\n"


CASE = Case(attack="ADD archive with duplicate entries (incl. a symlink to the canary "
                   "then a file)",
            outcome="builds; the last entry wins, replacing (not following) the first",
            setup=setup, check=check)
