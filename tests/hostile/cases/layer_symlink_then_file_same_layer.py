"""Attack: one base layer holds ``link -> <canary>`` and then ``link/pwned``: the file is
written through the symlink the same archive just made.

Expect: a clear error, "would be written through symlink".

Why: within one archive the unpacker itself made the link; following it would write the
host's canary directory. distill never writes through a symlink it meets on the way.
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("link", str(h.canary)), f("link/pwned", b"pwned\n")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="one layer: `link -> <canary>` then `link/pwned`",
            outcome="refused: `would be written through symlink 'link'`",
            setup=setup, error="would be written through symlink 'link'")
