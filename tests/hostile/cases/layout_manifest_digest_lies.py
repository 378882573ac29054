"""Attack: an OCI layout whose manifest blob, named by the digest index.json gives, was
swapped for another manifest of the same size (its layer list edited).

Expect: a clear error naming the layout, "content hashes to … expected".

Why: the index's digest is what the user's reference pins; a manifest that is not that
digest must not be used, whatever it says.
"""
import json

from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")))
    path = lay.blob_path(lay.index["manifests"][0]["digest"])
    honest = path.read_bytes()
    evil = json.dumps({**lay.manifest, "annotations": {"x": "y"}}).encode()
    path.write_bytes(evil[:len(honest)] if len(evil) >= len(honest)
                     else evil.ljust(len(honest), b" "))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: the manifest blob's bytes are not its digest",
            outcome="refused: `content hashes to sha256:…, expected sha256:…`",
            setup=setup, error="content hashes to")
