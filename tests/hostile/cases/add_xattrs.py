"""Attack: ``ADD evil.tar /`` whose archive carries xattrs: ``etc/`` with
``trusted.overlay.opaque=y`` (would hide the base's /etc from later steps),
``file`` with ``user.hostile``, ``security.capability`` and ``security.selinux``.

Expect: the build succeeds; ``trusted.*`` is dropped (the next RUN still reads the
base's /etc/passwd), the others follow distill.sandbox.xattrs (kept, or skipped where
the filesystem refuses them); nothing is set on a host file.

Why: overlayfs' controls must never come from an archive; the rest is image content.
"""
import struct

from tests.hostile.harness import Case, Hostile, d, f, tar

X = "SCHILY.xattr."
CAP = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(d("etc", pax={X + "trusted.overlay.opaque": b"y"}),
                           f("file", b"x\n", pax={X + "user.hostile": b"1",
                                                  X + "security.capability": CAP,
                                                  X + "security.selinux": b"x_t"})))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /\nRUN cat /etc/passwd > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes().startswith(b"root:x:0:0")
    assert (h.out / "file").read_bytes() == b"x\n"


CASE = Case(attack="ADD archive xattrs: `trusted.overlay.opaque`, `user.*`, "
                   "`security.capability`, `security.selinux`",
            outcome="builds; `trusted.*` dropped (the base's /etc stays visible)",
            setup=setup, check=check)
