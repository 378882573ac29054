"""Attack: a base layer whiteout with an empty name, ``dir/.wh.`` (the whiteout of
``dir/`` itself, i.e. of the directory it is in, written as ``dir/``).

Expect: a clear error, "invalid whiteout entry".

Why: joining an empty name to a directory names the directory; a whiteout may only name
an entry inside it.
"""
from tests.hostile.harness import Case, Hostile, d, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(d("dir"), f("dir/.wh.")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer whiteout with an empty name `dir/.wh.`",
            outcome="refused: `invalid whiteout entry`",
            setup=setup, error="invalid whiteout entry")
