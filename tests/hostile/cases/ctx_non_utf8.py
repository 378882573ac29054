"""Attack: a build context whose names are not UTF-8: ``caf\\xe9`` (Latin-1),
``\\xff\\xfe-dir/inner\\x80`` and ``ok\\xc3`` (a truncated sequence), copied with
``COPY . /ctx/``.

Expect: the build succeeds and every name is copied byte for byte (with its content);
no UnicodeError, no traceback.

Why: Linux names are bytes; a builder that decodes them as UTF-8 crashes or mangles
them (BuildKit copies them as they are).
"""
import os

from tests.hostile.harness import Case, Hostile

NAMES = {b"caf\xe9": b"latin-1\n", b"\xff\xfe-dir/inner\x80": b"inner\n", b"ok\xc3": b"cut\n"}


def setup(h: Hostile) -> None:
    h.busybox()
    for name, data in NAMES.items():
        h.file(name, data)
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\nRUN ls /ctx | wc -l > /count\n")


def check(h: Hostile) -> None:
    ctx = os.fsencode(h.out / "ctx")
    for name, data in NAMES.items():
        with open(os.path.join(ctx, name), "rb") as got:
            assert got.read() == data, name
    assert sorted(os.listdir(ctx)) == sorted([b"Dockerfile", b"caf\xe9", b"\xff\xfe-dir",
                                              b"ok\xc3"])
    assert (h.out / "count").read_bytes().strip() == b"4"


CASE = Case(attack="context with non-UTF-8 names, `COPY . /ctx/`",
            outcome="builds; names and contents copied byte for byte",
            setup=setup, check=check)
