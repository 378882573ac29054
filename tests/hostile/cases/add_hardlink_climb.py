"""Attack: ``ADD evil.tar /dst/`` whose archive holds a hardlink ``pwned`` ->
``../../…/<canary>/secret``.

Expect: a clear error, "is a hardlink to"… "outside of the destination"; the canary
gains no link (its link count and ctime are checked).

Why: a hardlink to a host file shares its inode: the image would carry the host's
secret and a RUN could change the host's file.
"""
from tests.hostile.harness import Case, Hostile, hard, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(hard("pwned", h.climb + "/secret")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive hardlink to `../../…/<canary>/secret`",
            outcome="refused: `is a hardlink to … outside of the destination`",
            setup=setup, error="outside of the destination")
