"""Attack: a root filesystem tarball for ``distill import`` with an entry that climbs to
the canary, ``../../…/<canary>/pwned``. ``distill import`` stores the tar as the image's
only layer without unpacking it; the first build FROM it unpacks it.

Expect: the import succeeds; the build fails with a clear error, "escapes the layer
root ('..')".

Why: ``distill import`` is a second way in for a base layer (``docker import``'s);
whatever path the layer took, unpacking confines it.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.import_rootfs(tar(f("ok", b"ok\n"), f(h.climb + "/pwned", b"pwned\n")), "evil:1")
    h.dockerfile("FROM evil:1\nLABEL x=y\n")


CASE = Case(attack="`distill import` of a rootfs tar with `../../…/<canary>/pwned`",
            outcome="imported; the build refuses it: `escapes the layer root ('..')`",
            setup=setup, error="escapes the layer root ('..')")
