"""Attack: layer 1 holds ``lnk -> <canary>``; layer 2 holds a hardlink ``pwned`` ->
``lnk/secret``, through the lower layer's symlink.

Expect: a clear error, "'lnk' does not exist": distill links only to files of the same
layer (walked without following symlinks), and ``lnk`` is not in it.

Why: the hardlink target must not be resolved through the lower layer's symlink to the
host; refusing a link to another layer's file is what an overlay of separate layer
directories can do (a real image's layer never links across layers).
"""
from tests.hostile.harness import Case, Hostile, hard, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("lnk", str(h.canary))), tar(hard("pwned", "lnk/secret")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layer 1: `lnk -> <canary>`; layer 2: hardlink `pwned` -> `lnk/secret`",
            outcome="refused: `'lnk' does not exist` (hardlinks only within their layer)",
            setup=setup, error="'lnk' does not exist")
