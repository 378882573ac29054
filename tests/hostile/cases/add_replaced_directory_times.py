"""Attack: ``ADD evil.tar /x/`` whose archive holds the directories ``a/`` and ``a/dir/``
with an old mtime, then ``a`` again as a symlink to the canary (a later member wins, so
the directory ``a`` is replaced by the link).

Expect: the build succeeds; ``/x/a`` is the symlink, and the canary's ``dir`` keeps its
mtime.

Why: directory times are set last (children change them); a directory that a later
member removed must be forgotten, or its path, now through the symlink, leads to the
host's ``<canary>/dir``.
"""
from tests.hostile.harness import Case, Hostile, d, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(d("a", mtime=1), d("a/dir", mtime=1), sym("a", str(h.canary))))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /x/\n")


def check(h: Hostile) -> None:
    import os
    assert os.readlink(h.out / "x" / "a") == str(h.canary)


CASE = Case(attack="ADD archive: directories `a/`, `a/dir/`, then `a -> <canary>`",
            outcome="builds; `a` is the link, the host directory's mtime is untouched",
            setup=setup, check=check)
