"""Attack: ``ADD evil.tar /dst/`` whose archive holds the directory ``/<canary>/`` (an
absolute name: it lands under the destination), ``evil -> <canary>`` (an absolute
symlink naming the host's canary) and then ``evil/pwned`` and ``evil/secret``, written
through it.

Expect: the build succeeds; the symlink is resolved inside the destination, as if
chrooted there (moby unpacks ADD archives in a chroot of the destination): the files
land at ``/dst/<canary>/pwned`` and ``/dst/<canary>/secret`` in the image; the host's
canary is untouched.

Why: the unpacker made the link itself; writing through it with the host's path lookup
writes the host.
"""
import os

from tests.hostile.harness import Case, Hostile, d, f, sym, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(d(str(h.canary)), sym("evil", str(h.canary)),
                           f("evil/pwned", b"pwned\n"),
                           f("evil/secret", b"replaced\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /dst/\n")


def check(h: Hostile) -> None:
    inside = h.out / "dst" / str(h.canary).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"pwned\n"
    assert (inside / "secret").read_bytes() == b"replaced\n"
    assert os.readlink(h.out / "dst" / "evil") == str(h.canary)


CASE = Case(attack="ADD archive: `evil -> <canary>`, then `evil/pwned`, `evil/secret`",
            outcome="builds; the link resolves inside the destination "
                    "(`/dst/<canary>/…` in the image)",
            setup=setup, check=check)
