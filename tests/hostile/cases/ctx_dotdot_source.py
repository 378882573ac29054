"""Attack: ``COPY ../canary/secret /stolen``: a source path that climbs out of the
context to the canary beside it.

Expect: a clear error, "forbidden path outside the build context" (the classic
builder's words; BuildKit cleans ``..`` at the context root and finds nothing).

Why: sources are paths inside the context; the canary's secret must not reach the
image.
"""
from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    h.dockerfile("FROM busybox:latest\nCOPY ../canary/secret ../../" +
                 str(h.canary).lstrip("/") + "/secret /stolen/\n")


CASE = Case(attack="`COPY ../canary/secret /stolen/` (a source out of the context)",
            outcome="refused: `forbidden path outside the build context`",
            setup=setup, error="forbidden path outside the build context")
