"""Attack: ``ADD evil.tar /dst/`` whose archive holds a hardlink ``pwned`` -> the
canary's absolute host path ``/<canary>/secret``.

Expect: a clear error, "is a hardlink to missing": the target is looked up inside the
destination, where it does not exist.

Why: an absolute link target is a path under the destination (moby's chroot), never
the host's file.
"""
from tests.hostile.harness import Case, Hostile, hard, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(hard("pwned", str(h.canary / "secret"))))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive hardlink to the absolute host path `/<canary>/secret`",
            outcome="refused: `is a hardlink to missing`",
            setup=setup, error="is a hardlink to missing")
