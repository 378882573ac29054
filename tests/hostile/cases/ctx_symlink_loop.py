"""Attack: a build context with symlink loops: ``a -> b``, ``b -> a``, ``self -> self``
and ``dir/up -> ..`` (a directory cycle for a walker that follows links), copied whole
with ``COPY . /ctx/``.

Expect: the build succeeds; the links are copied as links (BuildKit keeps symlinks in a
copied directory as symlinks), no walk loops.

Why: a context walker that follows symlinks never ends (or hashes forever) on a loop;
one that follows ``dir/up`` copies the context into itself.
"""
import os

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.symlink("b", h.ctx / "a")
    os.symlink("a", h.ctx / "b")
    os.symlink("self", h.ctx / "self")
    (h.ctx / "dir").mkdir()
    h.file("dir/file", b"file\n")
    os.symlink("..", h.ctx / "dir" / "up")
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n")


def check(h: Hostile) -> None:
    ctx = h.out / "ctx"
    links = {n: os.readlink(ctx / n) for n in ("a", "b", "self", "dir/up")}
    assert links == {"a": "b", "b": "a", "self": "self", "dir/up": ".."}, links
    assert (ctx / "dir" / "file").read_bytes() == b"file\n"
    assert sorted(os.listdir(ctx / "dir")) == ["file", "up"]


CASE = Case(attack="context with symlink loops (`a -> b -> a`, `self -> self`, `dir/up -> ..`), "
                   "`COPY . /ctx/`",
            outcome="builds; the links are copied as links",
            setup=setup, check=check)
