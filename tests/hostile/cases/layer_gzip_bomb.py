"""Attack: a base layer that is a gzip bomb: about 1.4 MB of gzip that inflates to a tar
holding 1.06 GiB of zeros.

Expect: a clear error, "decompression bomb" naming the ratio ("256 times", the limit in
distill.limits) once past the 1 GiB grace.

Why: the compressed size is all a registry or layout can vouch for; the unpacker must
stop a layer that expands without bound before it fills the store.
"""
from tests.hostile.harness import Case, Hostile, gzip_bomb, sha256


def setup(h: Hostile) -> None:
    # its true diff_id would take inflating it here; distill must stop before comparing
    h.layout((gzip_bomb(1088 << 20), sha256(b"never reached")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer gzip bomb (1.4 MB -> 1.06 GiB)",
            outcome="refused: `expands more than 256 times … decompression bomb` (limits.py)",
            setup=setup, error="refusing a decompression bomb")
