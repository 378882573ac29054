"""Attack: layer 1 holds ``lnk -> <canary>``; layer 2 holds the whiteout
``lnk/.wh.secret``, deleting the canary's secret if the link is followed.

Expect: the build succeeds; in the image ``/lnk`` is a directory of the upper layer
(holding only the whiteout: ``/lnk/secret`` does not exist), the lower symlink is
hidden; the canary keeps its secret. (overlayfs lists the whiteout in ``readdir`` of a
directory that exists in one layer only, a name that cannot be stat'ed: the RUN tests
existence, not ``ls``.)

Why: deletions, like writes, must never follow a lower layer's symlink out of the root.
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("lnk", str(h.canary))), tar(f("lnk/.wh.secret")))
    h.dockerfile("FROM base\nRUN test -d /lnk && test ! -L /lnk && test ! -e /lnk/secret && "
                 "echo gone > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"gone\n"


CASE = Case(attack="layer 1: `lnk -> <canary>`; layer 2: whiteout `lnk/.wh.secret`",
            outcome="builds; `/lnk` is a directory of the upper layer, `/lnk/secret` absent",
            setup=setup, check=check)
