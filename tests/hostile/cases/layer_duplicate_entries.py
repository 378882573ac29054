"""Attack: a base layer with duplicate entries: ``dup`` twice (first, second), ``x`` a
directory then a file, ``y`` a file then a directory with a file in it.

Expect: the build succeeds and the last entry wins, as tar extracts: ``dup`` is
"second", ``x`` a file, ``y`` a directory holding ``inner``.

Why: a later duplicate may change an entry's type; an unpacker that keeps the first, or
writes the second through the first (a directory swapped for a symlink), is confused
into writing elsewhere.
"""
from tests.hostile.harness import Case, Hostile, d, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("dup", b"first\n"), f("dup", b"second\n"),
                 d("x"), f("x/child", b"gone\n"), f("x", b"file now\n"),
                 f("y", b"file first\n"), d("y"), f("y/inner", b"in\n")))
    h.dockerfile("FROM base\nRUN cat /dup /x /y/inner > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"second\nfile now\nin\n"
    assert (h.out / "x").is_file() and (h.out / "y").is_dir()


CASE = Case(attack="base layer with duplicate entries (file/file, dir/file, file/dir)",
            outcome="builds; the last entry wins, as tar",
            setup=setup, check=check)
