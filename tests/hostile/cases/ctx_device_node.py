"""Attack: a build context holding a character device, ``zero`` (1,5: /dev/zero) and
``urandom`` (1,9), copied with ``COPY . /ctx/``.

Expect: the build finishes (no endless read of /dev/zero into the store) and succeeds;
the nodes are copied as device nodes, never opened (a RUN sees a char device it cannot
open).

Why: reading a device as a file never ends (/dev/zero) or leaks the host's state; a
copier handles a device by its type. The context is the user's directory, but its
contents are untrusted (a checked-out repository or an unpacked tarball may hold nodes).
"""
import os
import stat

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.mknod(h.ctx / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    os.mknod(h.ctx / "urandom", stat.S_IFCHR | 0o666, os.makedev(1, 9))
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n"
                 "RUN (test -c /ctx/zero && echo char || echo other) > /kind; "
                 "(head -c 1 /ctx/zero > /dev/null 2>&1 && echo opened || echo refused) > /open\n")


def check(h: Hostile) -> None:
    assert (h.out / "kind").read_bytes() == b"char\n"
    assert (h.out / "open").read_bytes() == b"refused\n"


CASE = Case(attack="context with character devices (/dev/zero, /dev/urandom), `COPY . /ctx/`",
            outcome="builds without reading them; copied as nodes a RUN cannot open",
            setup=setup, check=check, needs_root=True)
