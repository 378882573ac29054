"""Attack: one base layer holds ``hostetc -> /etc`` (an absolute symlink); the next layer
holds ``hostetc/distill-hostile-pwned``: applied naively onto a host directory, the second
layer writes the host's ``/etc``.

Expect: the build succeeds; the image has the file inside its own root
(``/hostetc/distill-hostile-pwned``: each layer unpacks into a directory of its own and
overlayfs shows the upper directory over the lower symlink); the host's ``/etc`` gains
nothing.

Why: a lower layer's symlink must never be followed out of the root by a later layer
(the runc/containerd "symlink in a lower layer" class). containerd resolves the parent
inside the root (the file would be the image's ``/etc/distill-hostile-pwned``); distill
never follows it at all; both are confined.
"""
import os

from tests.hostile.harness import Case, Hostile, f, sym, tar

HOST = "/etc/distill-hostile-pwned"


def setup(h: Hostile) -> None:
    assert not os.path.lexists(HOST)
    h.layout(tar(sym("hostetc", "/etc")), tar(f("hostetc/distill-hostile-pwned", b"pwned\n")))
    h.dockerfile("FROM base\nRUN cat /hostetc/distill-hostile-pwned > /seen\n")


def check(h: Hostile) -> None:
    assert not os.path.lexists(HOST), f"{HOST} was written on the host"
    assert (h.out / "seen").read_bytes() == b"pwned\n"
    assert (h.out / "hostetc" / "distill-hostile-pwned").read_bytes() == b"pwned\n"
    assert not (h.out / "etc" / "distill-hostile-pwned").exists()


CASE = Case(attack="layer 1: `hostetc -> /etc`; layer 2: `hostetc/distill-hostile-pwned`",
            outcome="builds; the file stays in the image (`/hostetc/` is a directory in the "
                    "upper layer), the host's /etc gains nothing",
            setup=setup, check=check)
