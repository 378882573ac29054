"""Attack: ``ADD evil.tar /dst/`` whose archive holds ``evil -> <canary>`` (an absolute
symlink naming the host's canary, which exists on the host) and then ``evil/pwned``.

Expect: a clear error, "cannot extract 'evil/pwned': its parent is not a directory":
the link resolves inside the destination, where ``<canary>`` does not exist (moby,
unpacking in a chroot of the destination, fails the same way with ENOENT).

Why: the host has a directory at the link's target; only a lookup on the host would
find it, and write the host's canary.
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(sym("evil", str(h.canary)), f("evil/pwned", b"pwned\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


CASE = Case(attack="ADD archive: `evil -> <canary>` (missing in the image), then "
                   "`evil/pwned`",
            outcome="refused: `cannot extract 'evil/pwned': its parent is not a directory`",
            setup=setup, error="cannot extract 'evil/pwned': its parent is not a directory")
