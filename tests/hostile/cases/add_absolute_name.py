"""Attack: ``ADD evil.tar /dst/`` whose member has the canary's absolute host path,
``/<canary>/pwned``.

Expect: the build succeeds with the file at ``/dst/<canary>/pwned`` in the image
(the leading ``/`` is relative to the destination, as moby unpacks).

Why: an absolute member name names a path under the destination, never the host's.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f(str(h.canary / "pwned"), b"pwned\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


def check(h: Hostile) -> None:
    assert (h.out / "dst" / str(h.canary).lstrip("/") / "pwned").read_bytes() == b"pwned\n"


CASE = Case(attack="ADD archive member `/<canary>/pwned` (absolute)",
            outcome="builds; the file lands at `/dst/<canary>/pwned` in the image",
            setup=setup, check=check)
