"""Attack: ``ADD evil.tar /dst/`` whose archive holds ``lnk -> <canary>`` and a hardlink
``pwned`` -> ``lnk/secret``: the link target reached through the archive's own symlink.

Expect: a clear error, "is a hardlink to missing": the target resolves inside the
destination (``/dst/<canary>/secret``), which does not exist.

Why: resolving the target with the host's path lookup would follow ``lnk`` to the host
and link the canary's secret into the image.
"""
from tests.hostile.harness import Case, Hostile, hard, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(sym("lnk", str(h.canary)), hard("pwned", "lnk/secret")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive: `lnk -> <canary>`, hardlink `pwned` -> `lnk/secret`",
            outcome="refused: `is a hardlink to missing` (resolved inside the destination)",
            setup=setup, error="is a hardlink to missing")
