"""Attack: one base layer holds ``up``, a relative symlink that climbs to the canary
(``../../…/<canary>``); the next layer holds ``up/pwned`` and ``up/secret`` (replacing
the canary's secret if followed).

Expect: the build succeeds with both files inside the image under ``/up/``; the canary
is untouched.

Why: as with an absolute link, a relative link in a lower layer must not lead a later
layer's entries out of the root.
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("up", h.climb)),
             tar(f("up/pwned", b"pwned\n"), f("up/secret", b"replaced\n")))
    h.dockerfile("FROM base\nRUN cat /up/secret > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"replaced\n"
    assert (h.out / "up" / "pwned").read_bytes() == b"pwned\n"


CASE = Case(attack="layer 1: `up -> ../../…/<canary>`; layer 2: `up/pwned`, `up/secret`",
            outcome="builds; both files stay under `/up/` in the image",
            setup=setup, check=check)
