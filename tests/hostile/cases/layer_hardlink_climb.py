"""Attack: a base layer hardlink whose target climbs out of the root to the canary's
secret: ``pwned`` -> ``../../…/<canary>/secret``.

Expect: a clear error, "escapes the layer root ('..')"; the canary gains no link (its
link count and ctime are checked).

Why: a hardlink to a host file would put the file's content into the image and let a
RUN modify the host's file through the shared inode.
"""
from tests.hostile.harness import Case, Hostile, hard, tar


def setup(h: Hostile) -> None:
    h.layout(tar(hard("pwned", h.climb + "/secret")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer hardlink to `../../…/<canary>/secret`",
            outcome="refused: `escapes the layer root ('..')`",
            setup=setup, error="escapes the layer root ('..')")
