"""Attack: a base layer holds ``lnk -> <canary>`` (a symlink) and a hardlink ``pwned`` ->
``lnk/secret``: the link target is reached through the symlink.

Expect: a clear error, "would be written through symlink 'lnk'" (the target's path is
walked without following symlinks).

Why: resolving a hardlink target with the host's path lookup would follow the symlink to
the canary and link the host's file into the image.
"""
from tests.hostile.harness import Case, Hostile, hard, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("lnk", str(h.canary)), hard("pwned", "lnk/secret")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="one layer: `lnk -> <canary>`, hardlink `pwned` -> `lnk/secret`",
            outcome="refused: `would be written through symlink 'lnk'`",
            setup=setup, error="would be written through symlink 'lnk'")
