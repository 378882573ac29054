"""Attack: the context holds ``escape -> <canary>`` and ``rel -> ../canary/secret`` and
is copied whole (``COPY . /ctx/``).

Expect: the build succeeds; both are symlinks in the image with their targets as
written; the canary's secret is not in the image.

Why: a copied directory's symlinks are copied as links, never dereferenced: the image
gets the link, not the host file it names.
"""
import os

from tests.hostile.harness import Case, Hostile


def setup(h: Hostile) -> None:
    h.busybox()
    os.symlink(h.canary, h.ctx / "escape")
    os.symlink("../canary/secret", h.ctx / "rel")
    h.dockerfile("FROM busybox:latest\nCOPY . /ctx/\n")


def check(h: Hostile) -> None:
    assert os.readlink(h.out / "ctx" / "escape") == str(h.canary)
    assert os.readlink(h.out / "ctx" / "rel") == "../canary/secret"


CASE = Case(attack="context symlinks out of the context, `COPY . /ctx/`",
            outcome="builds; copied as symlinks, the host file is not read",
            setup=setup, check=check)
