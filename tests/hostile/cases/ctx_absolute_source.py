"""Attack: ``COPY /<canary>/secret /stolen``: an absolute host path as a source.

Expect: a clear error, "not found": an absolute source is a path inside the context.

Why: as BuildKit: ``COPY /x`` means the context's ``x``; a builder that opened the host
path would copy any file into the image.
"""
from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    h.dockerfile(f"FROM busybox:latest\nCOPY {h.canary}/secret /stolen\n")


CASE = Case(attack="`COPY /<canary>/secret /stolen` (an absolute host path)",
            outcome="refused: `not found` (absolute sources are context paths)",
            setup=setup, error="not found")
