"""Several archives read as one, as apt reads its sources: a stable release with its
point-release updates and its security updates (bookworm, bookworm-updates from the same
mirror, bookworm-security from debian-security), each verified on its own.

A package name's records from every archive are offered together; the resolver takes the
newest version, so a security fix wins over the release's own version. Each record
remembers the archive it came from, so the lock can say where to fetch it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

from distill.debian.archive import DEFAULT_MIRROR, SECURITY_MIRROR, Archive
from distill.debian.control import PackageRecord, Release
from distill.debian.lock import Lock

#: Stable codenames whose -updates and -security suites exist on Debian's mirrors.
STABLE = frozenset({"bullseye", "bookworm", "trixie"})


def default_suites(mirror: str, suite: str) -> list[tuple[str, str]]:
    """(mirror, suite) to read for ``suite``: with Debian's own mirror and a stable
    codename, its updates and security suites as well (as Google's distroless images
    and a default apt sources list have them); otherwise the one suite given."""
    if mirror.rstrip("/") != DEFAULT_MIRROR or suite not in STABLE:
        return [(mirror, suite)]
    return [(mirror, suite), (mirror, f"{suite}-updates"), (SECURITY_MIRROR, f"{suite}-security")]


class Sources:
    """The first archive is the release (its suite names the image's Debian); the others
    add newer versions of its packages."""

    def __init__(self, archives: Sequence[Archive]) -> None:
        if not archives:
            raise ValueError("no archive")
        self.archives = list(archives)
        self.primary = self.archives[0]
        self.arch = self.primary.arch
        self._index: dict[str, list[PackageRecord]] | None = None
        self._origin: dict[tuple[str, str, str, str], Archive] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for archive in self.archives:
            archive.close()

    def packages(self) -> dict[str, list[PackageRecord]]:
        """Package name -> its records from every archive (the first archive that lists
        a record is where it is fetched from)."""
        if self._index is None:
            index: dict[str, list[PackageRecord]] = {}
            for archive in self.archives:
                for name, records in archive.packages().items():
                    for rec in records:
                        key = _key(rec)
                        if key not in self._origin:
                            self._origin[key] = archive
                            index.setdefault(name, []).append(rec)
            self._index = index
        return self._index

    def newest_release(self) -> Release:
        """The most recent of the archives' verified Releases: a lock's date."""
        return max((a.release() for a in self.archives), key=lambda r: r.date_epoch)

    def lock(self, records: Iterable[PackageRecord]) -> Lock:
        release = self.newest_release()
        self.packages()     # where each record came from (read once, cached)
        records = list(records)
        mirrors = {rec.name: self._origin[_key(rec)].mirror for rec in records
                   if self._origin[_key(rec)].mirror != self.primary.mirror}
        return Lock(mirror=self.primary.mirror, suite=self.primary.suite, arch=self.arch,
                    release_date=release.date, date_epoch=release.date_epoch,
                    packages=tuple(sorted(records, key=lambda r: r.name)),
                    mirrors=tuple(sorted(mirrors.items())))


def _key(rec: PackageRecord) -> tuple[str, str, str, str]:
    return (rec.name, rec.version, rec.architecture, rec.sha256)
