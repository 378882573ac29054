"""Attack: the context holds ``escape -> <canary>`` (an absolute symlink out of the
context) and the Dockerfile copies ``escape/secret``.

Expect: a clear error, "not found": the source is resolved inside the context (the
link's target is a path *in the context*), where no such file exists. The secret is in
no output.

Why: a context's symlinks are untrusted content; following one out of the context
would copy any host file the user running the build can read into the image (BuildKit
resolves sources in the context root too).
"""
import os

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.symlink(h.canary, h.ctx / "escape")
    h.dockerfile("FROM busybox:latest\nCOPY escape/secret /stolen\n")


CASE = Case(attack="context symlink `escape -> <canary>`, `COPY escape/secret /stolen`",
            outcome="refused: `not found` (resolved inside the context)",
            setup=setup, error="not found")
