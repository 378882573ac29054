"""Attack: a base layer entry with an absolute name, the canary's host path:
``/<canary>/pwned``.

Expect: the build succeeds and the file is inside the image at that path
(``<canary>/pwned`` under the image's root); the host's canary is untouched.

Why: a tar name is always relative to the layer root: containerd and BuildKit strip the
leading ``/``, and so does distill (an absolute name is no escape, only a path).
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f(str(h.canary / "pwned"), b"pwned\n")))
    h.dockerfile("FROM base\nRUN cat " + str(h.canary / "pwned") + " > /seen\n")


def check(h: Hostile) -> None:
    inside = h.out / str(h.canary).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"pwned\n"
    assert (h.out / "seen").read_bytes() == b"pwned\n"


CASE = Case(attack="base layer entry with an absolute name `/<canary>/pwned`",
            outcome="builds; the file lands at that path inside the image",
            setup=setup, check=check)
