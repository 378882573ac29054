"""Attack: an OCI layout whose layer blob file, named by the digest the manifest gives,
holds other bytes of the same size (a substituted layer: ``pwned`` instead of ``a``).

Expect: a clear error naming the layout and the blob's digest, "content hashes to".

Why: content addressing is the only thing that ties a layer to its manifest; a blob that
does not hash to its name is refused before any of it is used.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    honest = tar(f("a", b"honest\n"))
    lay = h.layout(honest)
    evil = tar(f("a", b"pwned!\n"))
    assert len(evil) == len(honest)
    lay.blob_path(lay.manifest["layers"][1]["digest"]).write_bytes(evil)
    h.dockerfile("FROM base\nRUN cat /a\n")


CASE = Case(attack="layout: a layer blob whose bytes are not its digest (same size)",
            outcome="refused: `content hashes to sha256:…, expected sha256:…`",
            setup=setup, error="content hashes to")
