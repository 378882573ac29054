"""Attack: a base layer 1100 directories deep (``d/d/…/d/leaf``, PAX names of up to
2.2 KB, under PATH_MAX), built with a RUN and written out with ``--output type=local``.

Expect: the build succeeds, the RUN reads the leaf, and the output holds it; at worst
a clear error, never a traceback.

Why: unpacking is one member at a time, but anything that walks the tree must not
recurse once per level (``os.walk`` on Python 3.11 dies with RecursionError past ~1000
levels) nor redo the whole path per level. Both were so in distill's local exporter
(~80 s of CPU, then a RecursionError traceback): it now walks without recursion and
resolves each directory from its parent's place. Unpacking the layer still costs
O(depth) per member (every parent is checked for a symlink, as containerd's RootPath
does): this case takes about a minute, the corpus's longest.
"""
from tests.hostile.harness import Case, Hostile, d, f, tar

DEPTH = 1100
REL = "/".join(["d"] * DEPTH)


def setup(h: Hostile) -> None:
    dirs = ["/".join(["d"] * (i + 1)) for i in range(DEPTH)]
    h.layout(tar(*[d(p) for p in dirs], f(REL + "/leaf", b"leaf\n")))
    h.remove_after += [h.out, h.store]
    h.timeout = 600
    h.dockerfile(f"FROM base\nRUN cat /{REL}/leaf > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"leaf\n"
    assert (h.out / REL / "leaf").read_bytes() == b"leaf\n"


CASE = Case(attack="base layer 1100 directories deep, RUN, `--output type=local`",
            outcome="builds; the RUN reads the leaf and the local export holds it",
            setup=setup, check=check)
