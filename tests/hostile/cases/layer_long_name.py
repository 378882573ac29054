"""Attack: a base layer entry whose (PAX) name is 8000 bytes: ``a/a/a/…/f``.

Expect: a clear error, "an entry's name is 8001 bytes long (the limit is 4096)"
(distill.limits: max_path).

Why: a path longer than PATH_MAX cannot be made with one syscall; an unpacker that
recurses or allocates per component is a cheap denial of service.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.layout(tar(f("a/" * 4000 + "f", b"x")))
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="base layer entry with an 8001-byte name",
            outcome="refused: `is 8001 bytes long (the limit is 4096)` (limits.py)",
            setup=setup, error="is 8001 bytes long (the limit is 4096)")
