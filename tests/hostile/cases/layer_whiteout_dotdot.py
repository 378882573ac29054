"""Attack: a base layer whiteout of ``..``: ``etc/.wh...`` would delete ``etc``'s parent,
the root, and ``.wh...`` at the top would delete the layer directory's parent (in the
store).

Expect: a clear error, "invalid whiteout entry".

Why: a whiteout deletes what it names; ``..`` names something outside the directory it
is in. containerd refuses such names too.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("etc/.wh...")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer whiteout `etc/.wh...` (of `..`)",
            outcome="refused: `invalid whiteout entry`",
            setup=setup, error="invalid whiteout entry")
