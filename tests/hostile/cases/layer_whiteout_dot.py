"""Attack: a base layer whiteout of ``.`` at the top, ``.wh..``: the whiteout of the root
itself (everything below it, the whole root filesystem).

Expect: a clear error, "invalid whiteout entry".

Why: a layer may delete files of the layers below, never the root itself; deleting "."
with a naive ``rm -rf`` of the joined path would remove the unpack directory.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f(".wh..")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer whiteout `.wh..` (of the root)",
            outcome="refused: `invalid whiteout entry`",
            setup=setup, error="invalid whiteout entry")
