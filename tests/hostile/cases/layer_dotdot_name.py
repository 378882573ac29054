"""Attack: a base layer entry whose name climbs out of the root with ``../`` to the
canary: ``../../…/<canary>/pwned`` (a PAX path, after a harmless entry).

Expect: a clear error, "escapes the layer root ('..')"; nothing is written outside the
layer's own directory (and that directory is thrown away).

Why: the classic tar path traversal. containerd cleans such names into the root; distill
refuses the layer outright, which is at least as safe: no image builder writes ``..``.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("harmless", b"fine\n"), f(h.climb + "/pwned", b"pwned\n")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer entry `../../…/canary/pwned`",
            outcome="refused: `escapes the layer root ('..')`",
            setup=setup, error="escapes the layer root ('..')")
