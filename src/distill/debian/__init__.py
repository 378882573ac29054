"""Debian's archive as a verified source of packages, for distroless bases.

* :mod:`~distill.debian.archive`: ``Archive`` — InRelease (gpgv) -> Packages (sha256
  from Release) -> .deb (sha256 from Packages), cached content-addressed.
* :mod:`~distill.debian.resolve`: the Pre-Depends/Depends closure of a package set.
* :mod:`~distill.debian.deb`: ``DebFile`` — control file and streamed data tarball.
* :mod:`~distill.debian.lock`: ``Lock`` — the chosen packages as reviewable JSON.
* :mod:`~distill.debian.control` / :mod:`~distill.debian.relations`: deb822 and
  relationship fields.
"""

from __future__ import annotations

from distill.debian.archive import DEFAULT_KEYRING, DEFAULT_MIRROR, Archive
from distill.debian.control import PackageRecord, Release
from distill.debian.deb import DebFile
from distill.debian.lock import Lock
from distill.debian.resolve import resolve

__all__ = [
    "DEFAULT_KEYRING",
    "DEFAULT_MIRROR",
    "Archive",
    "DebFile",
    "Lock",
    "PackageRecord",
    "Release",
    "resolve",
]
