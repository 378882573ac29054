"""Attack: a base layer whiteout with an absolute path that names the canary's secret,
``/<canary>/.wh.secret``.

Expect: the build succeeds; the whiteout applies inside the image (a path that does not
exist in the lower layers, so nothing is hidden: ``<canary>/secret`` does not exist in
the image); the host's canary keeps its secret. (overlayfs lists a whiteout of a
directory that exists in one layer only in ``readdir``, as a name that cannot be
stat'ed, for distill as for containerd's overlayfs snapshotter; the RUN tests existence.)

Why: the whiteout's directory is a path in the image like any entry's; unpacking it into
the host's directory of that name would delete the host's file.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f(str(h.canary / ".wh.secret"))))
    inside = str(h.canary)
    h.dockerfile(f"FROM base\nRUN test -d {inside} && test ! -e {inside}/secret && "
                 "echo gone > /seen\n")


def check(h: Hostile) -> None:
    assert (h.out / "seen").read_bytes() == b"gone\n"
    assert not (h.out / str(h.canary / "secret").lstrip("/")).exists()


CASE = Case(attack="base layer whiteout `/<canary>/.wh.secret` (absolute)",
            outcome="builds; the whiteout applies inside the image only",
            setup=setup, check=check)
