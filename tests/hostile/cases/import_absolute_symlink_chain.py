"""Attack: a root filesystem tarball for ``distill import`` with absolute names and
absolute symlinks aimed at the host: ``/<canary>/pwned`` (a file), ``etc -> /<canary>``
and ``passwd-link -> /<canary>/secret`` (symlinks), imported and then used as a base
whose ``COPY``/``RUN`` go through the links.

Expect: the build succeeds; the file is at ``<canary>/pwned`` inside the image, the
RUN's ``cat /passwd-link`` finds no file (the image has no ``<canary>/secret``), the
COPY through ``/etc/`` writes ``<canary>/copied`` inside the image; the host's canary is
untouched and its secret is in no output.

Why: absolute names and link targets are paths of the image; the build's own steps
(COPY's destination, RUN's view) resolve them in the root, never on the host.
"""
import io
import tarfile

from tests.hostile.harness import Case, Hostile, Member, d, f, sym, tar


def setup(h: Hostile) -> None:
    c = str(h.canary)
    base = tar(*[m for m in _busybox(h)],
               f(c + "/pwned", b"pwned\n"), sym("passwd-link", c + "/secret"))
    h.import_rootfs(base, "evil:2")
    h.file("copied", b"copied\n")
    h.dockerfile(f"FROM evil:2\nRUN ln -s {c} /via\n"
                 "COPY copied /via/\n"
                 "RUN (cat /passwd-link || echo nothing) > /seen 2>/dev/null\n")


def _busybox(h: Hostile) -> list[Member]:
    """The busybox root filesystem as members, to write one tar with the attack's."""
    members = []
    with tarfile.open(fileobj=io.BytesIO(h.base.plain)) as t:
        for m in t.getmembers():
            src = t.extractfile(m) if m.isreg() else None
            data = src.read() if src is not None else b""
            if m.issym():
                members.append(sym(m.name, m.linkname))
            elif m.isdir():
                members.append(d(m.name, m.mode))
            else:
                members.append(f(m.name, data, m.mode))
    return members


def check(h: Hostile) -> None:
    inside = h.out / str(h.canary).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"pwned\n"
    assert (inside / "copied").read_bytes() == b"copied\n"
    assert (h.out / "seen").read_bytes() == b"nothing\n"


CASE = Case(attack="`distill import` of a rootfs with `/<canary>/pwned` and symlinks to "
                   "`/<canary>/…`, then COPY and RUN through them",
            outcome="builds; every path resolves inside the image",
            setup=setup, check=check)
