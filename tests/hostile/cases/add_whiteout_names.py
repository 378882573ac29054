"""Attack: ``ADD evil.tar /etc/`` whose archive holds whiteout-looking names:
``.wh.passwd`` (would delete the base's /etc/passwd if taken as a whiteout),
``.wh..wh..opq`` (would hide all of /etc) and ``.wh...`` (a whiteout of ``..``).

Expect: the build succeeds; an ADD archive is not a layer, so these are not whiteouts
and delete nothing: ``/etc/passwd`` is still there for the next RUN.

Why: BuildKit unpacks ADD archives with no whiteout conversion; a builder that treated
the names as whiteouts would let an archive delete files of the base, or (``..``) of
the directory above the destination.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    h.busybox()
    h.file("evil.tar", tar(f(".wh.passwd", b"w\n"), f(".wh..wh..opq", b"o\n"),
                           f(".wh...", b"d\n"), f("added", b"added\n")))
    h.dockerfile("FROM busybox:latest\nADD evil.tar /etc/\n"
                 "RUN cat /etc/passwd /etc/added > /seen\n")


def check(h: Hostile) -> None:
    seen = (h.out / "seen").read_bytes()
    assert seen.startswith(b"root:x:0:0") and seen.endswith(b"added\n"), seen
    assert (h.out / "etc" / "group").exists()


CASE = Case(attack="ADD archive with `.wh.passwd`, `.wh..wh..opq`, `.wh...` into /etc/",
            outcome="builds; not whiteouts: nothing of the base is deleted",
            setup=setup, check=check)
