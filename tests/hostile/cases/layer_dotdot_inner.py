"""Attack: a base layer entry with ``..`` in the middle of a short (ustar) name,
``etc/../../pwned``: lexically it leaves the root by one level.

Expect: a clear error, "escapes the layer root ('..')".

Why: a name that starts inside the root but climbs out later must be caught as surely as
a leading ``../``; checking only the first component is a common mistake.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("etc/../../pwned", b"pwned\n")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer entry `etc/../../pwned`",
            outcome="refused: `escapes the layer root ('..')`",
            setup=setup, error="escapes the layer root ('..')")
