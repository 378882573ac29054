"""Attack: ``ADD evil.tar /x/`` whose archive holds ``l -> <canary>/secret`` (an
absolute symlink, which is allowed: it resolves inside the image) and then a hardlink
``h`` -> ``l`` with mode 06777, and the same for the canary's directory with mode 01777.
Found by the outsider review of issue 13.

Expect: the build succeeds; ``h`` is a hardlink to the symlink (as tar makes it) and the
canary keeps its modes.

Why: the hardlink to a symlink *is* a symlink; setting the member's mode with a chmod
that follows links changed the host file it points at (setuid, world-writable: a root
shell for every local user).
"""
from tests.hostile.harness import Case, Hostile, hard, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(sym("l", str(h.canary / "secret")), hard("h", "l", mode=0o6777),
                           sym("ld", str(h.canary / "dir")), hard("hd", "ld", mode=0o1777)))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /x/\n")


def check(h: Hostile) -> None:
    import os
    assert os.readlink(h.out / "x" / "h") == str(h.canary / "secret")
    assert os.readlink(h.out / "x" / "hd") == str(h.canary / "dir")


CASE = Case(attack="ADD archive: `l -> <canary>/secret`, then a hardlink `h` -> `l` with "
                   "mode 06777 (and the same for a directory, 01777)",
            outcome="builds; the hardlink is a symlink in the image, the host file's mode "
                    "is untouched",
            setup=setup, check=check)
