"""Attack: ``ADD evil.tar /dst/`` whose archive holds a member with a 300-byte path
component (over NAME_MAX).

Expect: a clear error, "has a path component of 300 bytes (the limit is 255)"
(distill.limits: max_component).

Why: the kernel refuses such a name (ENAMETOOLONG); the limit turns it into an error that
names the member instead of an OSError from deep in the unpacker.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f("d/" + "n" * 300, b"x")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive member with a 300-byte name component",
            outcome="refused: `has a path component of 300 bytes (the limit is 255)`",
            setup=setup, error="has a path component of 300 bytes (the limit is 255)")
