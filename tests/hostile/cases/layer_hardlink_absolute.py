"""Attack: a base layer hardlink whose target is the canary's absolute host path,
``pwned`` -> ``/<canary>/secret``.

Expect: a clear error, "does not exist": the target is looked up inside the layer,
where no such path exists.

Why: an absolute link target names a file of the image, never of the host (as
containerd resolves it in the root).
"""
from tests.hostile.harness import Case, Hostile, hard, tar


def setup(h: Hostile) -> None:
    h.layout(tar(hard("pwned", str(h.canary / "secret"))))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer hardlink to the absolute host path `/<canary>/secret`",
            outcome="refused: `'tmp' does not exist` (looked up inside the layer only)",
            setup=setup, error="'tmp' does not exist")
