"""Attack: a base layer 250 directories deep (``d/d/…/d/leaf``, PAX names of up to 500
bytes), built with a RUN and written out with ``--output type=local``: the fast
version of layer_deep_tree (which goes past Python's recursion limit, and takes a minute).

Expect: the build succeeds, the RUN reads the leaf, and the output holds it.

Why: deep trees are legal; every walk of the tree (unpacking, the RUN's diff, the
exporter) must handle them.
"""
from tests.hostile.harness import Case, Hostile, d, f, tar

DEPTH = 250
REL = "/".join(["d"] * DEPTH)


def setup(h: Hostile) -> None:
    dirs = ["/".join(["d"] * (i + 1)) for i in range(DEPTH)]
    h.layout(tar(*[d(p) for p in dirs], f(REL + "/leaf", b"leaf\n")))
    h.dockerfile(f"FROM base\nRUN cat /{REL}/leaf > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"leaf\n"
    assert (h.out / REL / "leaf").read_bytes() == b"leaf\n"


CASE = Case(attack="base layer 250 directories deep, RUN, `--output type=local`",
            outcome="builds; the leaf is read and exported",
            setup=setup, check=check)
