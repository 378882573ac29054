"""Attack: ``COPY self/x /x`` where the context's ``self`` is a symlink to itself: the
source path cannot be resolved.

Expect: a clear error naming the Dockerfile line, "too many levels of symbolic links".

Why: resolving a source through a loop must stop (40 links, as the kernel) and say so,
not spin or recurse until Python's stack gives out.
"""
import os

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.symlink("self", h.ctx / "self")
    h.dockerfile("FROM busybox:latest\nCOPY self/x /x\n")


CASE = Case(attack="`COPY self/x /x` with `self -> self` in the context",
            outcome="refused: `too many levels of symbolic links`",
            setup=setup, error="too many levels of symbolic links")
