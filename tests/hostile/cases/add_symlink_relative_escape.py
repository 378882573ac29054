"""Attack: ``ADD evil.tar /dst/`` whose archive holds ``up``, a relative symlink that
climbs to the canary (``../../…/<canary>``), then ``up/pwned``.

Expect: a clear error, "outside of the destination" (moby's breakout check on link
targets).

Why: a relative link out of the destination is how a later member, or a later step,
would be led to the host.
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(sym("up", h.climb), f("up/pwned", b"pwned\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive: `up -> ../../…/<canary>`, then `up/pwned`",
            outcome="refused: `links to … outside of the destination`",
            setup=setup, error="outside of the destination")
