"""Several archives read as one: the newest version wins, and the lock says which mirror
each package is fetched from (fake archives: what they serve is all that matters)."""

from __future__ import annotations

from typing import Any, cast

from distill.debian.archive import DEFAULT_MIRROR, SECURITY_MIRROR, Archive
from distill.debian.control import PackageRecord
from distill.debian.resolve import resolve
from distill.debian.sources import Sources, default_suites


def rec(name: str, version: str) -> PackageRecord:
    return PackageRecord(name=name, version=version, architecture="amd64",
                         filename=f"pool/{name}_{version}.deb", sha256=f"{len(version):064x}",
                         size=1, fields=(("Package", name), ("Version", version)))


class FakeRelease:
    def __init__(self, date: str, epoch: int) -> None:
        self.date, self.date_epoch = date, epoch


class FakeArchive:
    def __init__(self, mirror: str, suite: str, records: list[PackageRecord],
                 epoch: int) -> None:
        self.mirror, self.suite, self.arch = mirror, suite, "amd64"
        self._records, self._release = records, FakeRelease(f"day {epoch}", epoch)

    def packages(self) -> dict[str, list[PackageRecord]]:
        out: dict[str, list[PackageRecord]] = {}
        for r in self._records:
            out.setdefault(r.name, []).append(r)
        return out

    def release(self) -> Any:
        return self._release

    def close(self) -> None:
        pass


def test_the_newest_version_wins_and_the_lock_names_its_mirror() -> None:
    release = FakeArchive(DEFAULT_MIRROR, "bookworm",
                          [rec("libssl3", "3.0.20-1~deb12u2"), rec("libc6", "2.36-9")], 100)
    security = FakeArchive(SECURITY_MIRROR, "bookworm-security",
                           [rec("libssl3", "3.0.22-1~deb12u2")], 300)
    updates = FakeArchive(DEFAULT_MIRROR, "bookworm-updates", [rec("libc6", "2.36-9+u1")], 200)
    sources = Sources(cast(list[Archive], [release, updates, security]))
    chosen = resolve(sources.packages(), ["libssl3", "libc6"], arch="amd64", with_deps=False)
    assert {r.name: r.version for r in chosen} == {"libssl3": "3.0.22-1~deb12u2",
                                                   "libc6": "2.36-9+u1"}
    lock = sources.lock(chosen)
    assert lock.suite == "bookworm" and lock.mirror == DEFAULT_MIRROR
    assert lock.mirrors == (("libssl3", SECURITY_MIRROR),)   # updates share the mirror
    assert lock.mirror_for("libc6") == DEFAULT_MIRROR
    assert (lock.release_date, lock.date_epoch) == ("day 300", 300)   # the newest Release


def test_debian_mirror_and_a_stable_codename_read_updates_and_security() -> None:
    assert default_suites(DEFAULT_MIRROR, "bookworm") == [
        (DEFAULT_MIRROR, "bookworm"), (DEFAULT_MIRROR, "bookworm-updates"),
        (SECURITY_MIRROR, "bookworm-security")]
    # another mirror (it may carry no -updates) or a suite that is not a stable codename
    assert default_suites("http://127.0.0.1:8080/debian", "bookworm") == [
        ("http://127.0.0.1:8080/debian", "bookworm")]
    assert default_suites(DEFAULT_MIRROR, "sid") == [(DEFAULT_MIRROR, "sid")]
