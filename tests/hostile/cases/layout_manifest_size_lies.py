"""Attack: an OCI layout whose index.json gives the manifest descriptor a size 1 TiB
larger than the manifest.

Expect: a clear error naming the layout, "JSON documents over 8388608 bytes are
refused" (the size is checked against the cap before anything is read).

Why: a manifest is read whole into memory; the reader must cap it and compare, never
allocate the size it is told.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")))
    lay.index["manifests"][0]["size"] += 1 << 40
    (lay.path / "index.json").write_text(__import__("json").dumps(lay.index))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: the manifest descriptor's size 1 TiB too large",
            outcome="refused: `JSON documents over 8388608 bytes are refused`",
            setup=setup, error="JSON documents over 8388608 bytes are refused")
