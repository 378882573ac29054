"""Attack: ``ADD evil.tar /dev-nodes/`` whose archive holds device nodes: ``mem`` (char
1,1), ``disk`` (block 8,0); a RUN then tries to open them.

Expect: the build succeeds; the nodes are in the image as entries, a RUN cannot open
them (nodev). Rootless, a user namespace makes no device node: the nodes are left out.

Why: distill unpacks ADD archives as root on the host: the node exists on the store's
filesystem, so only the mounts' ``nodev`` keeps it from being the host's memory or disk.
"""
from tests.helpers.rootless import ROOTLESS
from tests.hostile.harness import BLK, CHR, Case, Hostile, dev, tar

RUN = ("RUN (test -c /n/mem && test -b /n/disk && echo kept || echo gone) > /kept; "
       "(head -c 1 /n/mem > /dev/null 2>&1 && echo opened || echo refused) > /mem; "
       "(head -c 1 /n/disk > /dev/null 2>&1 && echo opened || echo refused) > /disk\n")


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(dev("mem", CHR, 1, 1), dev("disk", BLK, 8, 0)))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /n/\n" + RUN)


def check(h: Hostile) -> None:
    got = {n: (h.out / n).read_bytes() for n in ("kept", "mem", "disk")}
    kept = b"gone\n" if ROOTLESS else b"kept\n"
    assert got == {"kept": kept, "mem": b"refused\n", "disk": b"refused\n"}, got


CASE = Case(attack="ADD archive with device nodes (char 1,1, block 8,0)",
            outcome="builds; nodes kept, a RUN cannot open them (nodev)",
            setup=setup, check=check)
