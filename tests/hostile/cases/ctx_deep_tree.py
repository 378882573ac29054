"""Attack: a build context 1100 directories deep (``d/d/…/d/leaf``, a 2.2 KB path, well
under PATH_MAX), copied with ``COPY . /ctx/``.

Expect: the build succeeds and ``/ctx/d/…/d/leaf`` is in the image (BuildKit copies
it); at worst a clear error, never a traceback.

Why: a checked-out repository can be any depth; a walker that recurses once per level
(``os.walk`` does on Python 3.11) dies with RecursionError past ~1000 levels.
(test_security_paths.py::test_deep_trees_left_by_a_run covers trees a RUN leaves.)
"""
import os

from tests.hostile.harness import Case, Hostile

DEPTH = 1100
REL = "/".join(["d"] * DEPTH)


def setup(h: Hostile) -> None:
    h.busybox()
    path = str(h.ctx)
    for _ in range(DEPTH):
        path += "/d"
        os.mkdir(path)
    h.file(REL + "/leaf", b"leaf\n")
    h.remove_after += [h.ctx, h.out, h.store]
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n")


def check(h: Hostile) -> None:
    assert (h.out / "ctx" / REL / "leaf").read_bytes() == b"leaf\n"


CASE = Case(attack="context 1100 directories deep, `COPY . /ctx/`",
            outcome="builds; every directory walk is iterative (a regression case: "
                    "Python 3.11's os.walk recursed past its limit, a traceback)",
            setup=setup, check=check)
