"""Attack: a base layer with device nodes: ``hostmem`` (char 1,1: the host's /dev/mem),
``hostdisk`` (block 8,0: /dev/sda) and ``hostkmsg`` (char 1,11); a RUN then tries to
open them.

Expect: the build succeeds; the nodes are kept as entries of the image (the RUN sees
a char and a block device) but opening them fails (the layers are mounted ``nodev``).
Rootless, a user namespace makes no device node: unpacking leaves them out.

Why: a device node is just an inode until it is opened on a mount that allows devices;
a base image must not give a build's RUN the host's memory or disks.
"""
from tests.helpers.rootless import ROOTLESS
from tests.hostile.harness import BLK, CHR, Case, Hostile, dev, tar

RUN = ("RUN (test -c /hostmem && test -b /hostdisk && echo kept || echo gone) > /kept; "
       "(head -c 1 /hostmem > /dev/null 2>&1 && echo opened || echo refused) > /mem; "
       "(head -c 1 /hostdisk > /dev/null 2>&1 && echo opened || echo refused) > /disk; "
       "(echo x 2> /dev/null > /hostkmsg && echo opened || echo refused) > /kmsg\n")


def setup(h: Hostile) -> None:
    h.layout(tar(dev("hostmem", CHR, 1, 1), dev("hostdisk", BLK, 8, 0),
                 dev("hostkmsg", CHR, 1, 11)))
    h.dockerfile("FROM base\n" + RUN)


def check(h: Hostile) -> None:
    got = {n: (h.out / n).read_bytes() for n in ("kept", "mem", "disk", "kmsg")}
    if ROOTLESS:   # no node: the write made a plain file in the image, harmless
        assert got == {"kept": b"gone\n", "mem": b"refused\n", "disk": b"refused\n",
                       "kmsg": b"opened\n"}, got
        return
    assert got == {"kept": b"kept\n", "mem": b"refused\n", "disk": b"refused\n",
                   "kmsg": b"refused\n"}, got


CASE = Case(attack="base layer with device nodes (char 1,1 /dev/mem, block 8,0, char 1,11)",
            outcome="builds; nodes kept as entries, a RUN cannot open them (nodev)",
            setup=setup, check=check)
