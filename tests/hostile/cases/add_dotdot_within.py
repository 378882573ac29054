"""Attack: ``ADD evil.tar /dst/`` whose member ``sub/../top`` climbs but stays inside the
destination, and ``./sub/./file`` with redundant components.

Expect: the build succeeds with ``/dst/top`` and ``/dst/sub/file``.

Why: ``..`` that stays inside is harmless and valid (moby accepts it); a confinement
check must be exact, not refuse every ``..`` nor let the ones that leave through.
"""
from tests.hostile.harness import Case, Hostile, d, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(d("sub"), f("sub/../top", b"top\n"), f("./sub/./file", b"f\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


def check(h: Hostile) -> None:
    assert (h.out / "dst" / "top").read_bytes() == b"top\n"
    assert (h.out / "dst" / "sub" / "file").read_bytes() == b"f\n"


CASE = Case(attack="ADD archive members `sub/../top`, `./sub/./file` (`..` staying inside)",
            outcome="builds; cleaned names inside the destination",
            setup=setup, check=check)
