"""Attack: a base layer whose PAX records carry extended attributes: ``etc/`` with
``trusted.overlay.opaque=y`` (to hide the base's /etc), ``redir/`` with
``trusted.overlay.redirect=/etc``, and ``capfile`` with ``security.capability``
(CAP_SETUID), ``security.selinux`` and ``user.hostile``.

Expect: the build succeeds; overlayfs' own ``trusted.*`` controls are dropped (the base's
/etc/passwd is still seen; ``/redir`` is an empty directory), ``user.hostile`` is kept
on the unpacked file, ``security.selinux`` is dropped; nothing is set on a host file.

Why: ``trusted.overlay.*`` steer overlayfs (opaque, redirect to another path); honouring
them lets a layer hide or alias files. User xattrs and file capabilities are image
content (BuildKit keeps them).
"""
import os
import struct

from tests.hostile.harness import Case, Hostile, d, f, tar

X = "SCHILY.xattr."
CAP = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)   # v2, effective, CAP_SETUID


def setup(h: Hostile) -> None:
    h.layout(tar(d("etc", pax={X + "trusted.overlay.opaque": b"y"}),
                 d("redir", pax={X + "trusted.overlay.redirect": b"/etc"}),
                 f("capfile", b"cap\n", 0o755,
                   pax={X + "security.capability": CAP, X + "user.hostile": b"1",
                        X + "security.selinux": b"system_u:object_r:shadow_t:s0"})))
    h.dockerfile("FROM base\nRUN cat /etc/passwd > /seen && ls -a /redir > /redir-list\n")


def check(h: Hostile) -> None:
    assert b"root:x:0:0" in (h.out / "seen").read_bytes()
    assert (h.out / "redir-list").read_bytes().split() == [b".", b".."]
    unpacked = [p / "capfile" for p in (h.store / "snapshots").iterdir()
                if (p / "capfile").exists()]
    assert len(unpacked) == 1, unpacked
    names = set(os.listxattr(unpacked[0], follow_symlinks=False))
    assert "user.hostile" in names, names
    assert not {n for n in names if n.startswith("trusted.") or n == "security.selinux"}


CASE = Case(attack="base layer xattrs: `trusted.overlay.opaque`/`redirect`, "
                   "`security.capability`, `security.selinux`, `user.*`",
            outcome="builds; `trusted.*` and `security.selinux` dropped, `user.*` and "
                    "file capabilities kept on the image's file only",
            setup=setup, check=check)
