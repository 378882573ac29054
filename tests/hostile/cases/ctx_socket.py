"""Attack: a build context holding a Unix socket with a listener behind it, copied
whole with ``COPY . /ctx/``.

Expect: the build succeeds; the socket is left out of the image (BuildKit skips
sockets: a tar cannot hold one) and nothing connects to it.

Why: ``open()`` of a socket fails (ENXIO) and ``connect()`` would talk to whatever
serves it: a copier must treat it as an entry to skip, not a file to read.
"""
import os
import socket

from tests.hostile.harness import Case, Hostile

_KEEP: list[socket.socket] = []


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("regular", b"regular\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(h.ctx / "sock"))
    sock.listen(1)
    sock.setblocking(False)
    _KEEP[:] = [sock]
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n")


def check(h: Hostile) -> None:
    sock = _KEEP.pop()
    try:
        sock.accept()
        raise AssertionError("distill connected to the context's socket")
    except BlockingIOError:
        pass
    finally:
        sock.close()
    assert (h.out / "ctx" / "regular").read_bytes() == b"regular\n"
    assert not os.path.lexists(h.out / "ctx" / "sock")


CASE = Case(attack="context with a listening Unix socket, `COPY . /ctx/`",
            outcome="builds; the socket is left out, never connected to",
            setup=setup, check=check)
