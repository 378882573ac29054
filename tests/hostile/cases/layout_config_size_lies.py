"""Attack: an OCI layout whose manifest gives the config descriptor a size 100 bytes
larger than the config (the digest is right).

Expect: a clear error naming the layout, "but its descriptor says".

Why: as for layers: sizes are checked exactly, a reader never reads past the size it
was told nor accepts a shorter blob.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")))
    lay.manifest["config"]["size"] += 100
    lay.save(config=False)
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: the config descriptor's size is 100 bytes too large",
            outcome="refused: `… but its descriptor says N`",
            setup=setup, error="but its descriptor says")
