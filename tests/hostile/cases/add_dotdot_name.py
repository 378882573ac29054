"""Attack: ``ADD evil.tar /dst/`` of a local archive whose member climbs out of the
destination to the canary, ``../../…/<canary>/pwned``.

Expect: a clear error, "is outside of the destination" (moby's breakout check); nothing
is written.

Why: ADD unpacks local archives on the build host, into the image's root: a member
that leaves the destination writes wherever it points.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f("ok", b"ok\n"), f(h.climb + "/pwned", b"pwned\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive member `../../…/<canary>/pwned`",
            outcome="refused: `is outside of the destination`",
            setup=setup, error="is outside of the destination")
