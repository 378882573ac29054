"""Attack: an OCI layout whose manifest says a layer blob is one byte shorter than it
is (the blob itself is honest: right digest, right diff_id).

Expect: a clear error naming the layout, "but its descriptor says".

Why: a descriptor's size bounds what a reader accepts; a reader that trusts the size to
stop early hashes a prefix, one that trusts the digest alone reads without bound. The
size must match exactly (as containerd checks).
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")), save=False)
    lay.manifest["layers"][1]["size"] -= 1
    lay.save()
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: a layer descriptor's size one byte short",
            outcome="refused: `… but its descriptor says N`",
            setup=setup, error="but its descriptor says")
