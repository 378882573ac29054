"""Attack: a base layer with the opaque marker at its top, ``.wh..wh..opq``: the root
directory made opaque, i.e. the "whiteout of the root" that would hide every lower
layer's files (the whole root filesystem), plus one file.

Expect: the build succeeds; the lower layers are *not* hidden: the image's root holds
busybox's directories and the layer's file, and a RUN still has its shell. Nothing
outside the image is touched.

Why: a layer may delete entries of the layers below, not empty the root it lives in
(an opaque mark on a layer's own root is ignored by overlayfs, which distill follows;
containerd's naive applier would remove every lower entry, so a consumer may differ).
Either way the mark acts on this image only: the host and the store's other snapshots
stay.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f(".wh..wh..opq"), f("only", b"only\n")))
    h.dockerfile("FROM base\nRUN cat /only > /seen\n")


def check(h: Hostile) -> None:
    names = sorted(p.name for p in h.out.iterdir())
    assert {"bin", "etc", "only", "seen"} <= set(names), names
    assert (h.out / "seen").read_bytes() == b"only\n"


CASE = Case(attack="base layer with `.wh..wh..opq` at its root (opaque root)",
            outcome="builds; the mark on the layer root is ignored (lower layers stay "
                    "visible), nothing outside is touched",
            setup=setup, check=check)
