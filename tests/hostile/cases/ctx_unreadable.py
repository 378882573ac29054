"""Attack: a build context holding a file the build cannot read: mode 000, owned by
another user, copied with ``COPY . /ctx/``.

The suite runs as root, which reads any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
this case runs distill under ``setpriv`` with those two capabilities dropped from its
bounding, inheritable and ambient sets (distill keeps every other power of root), so
the read really fails with EACCES.

Expect: a clear error naming the file, "Permission denied"; no traceback.

Why: an unreadable file is an ordinary failure (BuildKit fails the same way); it must
be reported as one, not crash the hashing or copying code.
"""
import os

from tests.hostile.harness import Case, Hostile

CAPS = "-dac_override,-dac_read_search"


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("readable", b"readable\n")
    locked = h.file("locked", b"locked\n", mode=0o000)
    os.chown(locked, 4242, 4242)
    h.prefix = ["setpriv", f"--inh-caps={CAPS}", f"--bounding-set={CAPS}", "--"]
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n")


CASE = Case(attack="context with a mode-000 file of another user, distill without "
                   "DAC capabilities, `COPY . /ctx/`",
            outcome="refused: `Permission denied` naming the file",
            setup=setup, error="Permission denied", needs_root=True)
