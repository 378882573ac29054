"""The Debian archive client against a local copy of the real archive, and the real one.

The local mirror holds the real, signed bookworm InRelease, its Packages.xz and a few
.debs, served from 127.0.0.1; tests tamper with one file at a time and expect the chain
of verification (gpgv -> Release sha256 -> Packages sha256) to refuse it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distill.debian import Archive, DebFile, Lock, resolve
from distill.debian.sources import Sources
from distill.errors import ArchiveError, VerificationError
from tests.helpers.mirror import DEBS, INRELEASE, PACKAGES_XZ, LocalMirror, build_local_mirror
from tests.helpers.mirror import serve_mirror as _serve_mirror

pytestmark = pytest.mark.integration

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Keys Debian retired: none of them signs bookworm today.
OTHER_KEYRING = Path("/usr/share/keyrings/debian-archive-removed-keys.gpg")


def _archive_reachable() -> bool:
    try:
        httpx.head("http://deb.debian.org/debian/dists/bookworm/InRelease", timeout=15)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="session")
def _served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMirror]:
    assert KEYRING.exists(), "debian-archive-keyring is not installed (make installs it)"
    assert _archive_reachable(), "deb.debian.org is not reachable"
    root = build_local_mirror(tmp_path_factory.mktemp("mirror"))
    with _serve_mirror(root) as mirror:
        yield mirror


@pytest.fixture
def mirror(_served: LocalMirror) -> Iterator[LocalMirror]:
    """The served local mirror; whatever a test tampers with is restored afterwards."""
    yield _served
    _served.restore()


def _archive(mirror: LocalMirror, cache: Path, keyring: Path = KEYRING) -> Archive:
    return Archive(mirror.url, "bookworm", "amd64", keyring=keyring, cache_dir=cache)


def _cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def test_resolve_fetch_and_read_from_the_local_mirror(mirror: LocalMirror,
                                                      tmp_path: Path) -> None:
    with _archive(mirror, tmp_path) as archive:
        release = archive.release()
        assert release.codename == "bookworm"
        assert release.date_epoch > 1_680_000_000
        assert "main/binary-amd64/Packages.xz" in release.sha256
        index = archive.packages()
        assert all(rec.architecture in ("amd64", "all")
                   for recs in index.values() for rec in recs)
        chosen = resolve(index, ["base-files", "netbase", "tzdata", "media-types"],
                         arch="amd64", exclude={"debconf"})
        assert [r.name for r in chosen] == sorted(DEBS)
        for rec in chosen:
            path = archive.fetch_deb(rec)
            with DebFile(path) as deb:
                assert f"Package: {rec.name}\n" in deb.control()
                assert f"Version: {rec.version}\n" in deb.control()
        with DebFile(archive.fetch_deb(index["netbase"][0])) as deb:
            with tarfile.open(fileobj=deb.data_tar(), mode="r|") as tar:
                names = {member.name for member in tar}
            assert deb.control_member("conffiles") is not None
        assert "./etc/services" in names
        # A second fetch is served (re-verified) from the cache.
        assert archive.fetch_deb(index["netbase"][0]) == path.parent / (
            index["netbase"][0].sha256 + ".deb")
        lock = Sources([archive]).lock(chosen)   # one archive: every package from it
    assert Lock.from_json(lock.to_json()) == lock
    assert lock.date_epoch == release.date_epoch


def test_tampered_deb_is_refused_and_not_cached(mirror: LocalMirror, tmp_path: Path) -> None:
    with _archive(mirror, tmp_path) as archive:
        rec = archive.packages()["netbase"][0]
        before = _cache_files(tmp_path)
        mirror.flip_byte(mirror.deb_path("netbase"))
        with pytest.raises(VerificationError) as caught:
            archive.fetch_deb(rec)
        message = caught.value.message
        assert "netbase" in message and rec.sha256 in message and "sha256 mismatch" in message
        assert _cache_files(tmp_path) == before  # no .deb and no partial download left
        mirror.restore()
        assert archive.fetch_deb(rec).exists()


def test_damaged_cache_entry_is_replaced(mirror: LocalMirror, tmp_path: Path) -> None:
    with _archive(mirror, tmp_path) as archive:
        rec = archive.packages()["netbase"][0]
        path = archive.fetch_deb(rec)
        path.write_bytes(b"\0" * rec.size)
        assert archive.fetch_deb(rec) == path
        with DebFile(path) as deb:
            assert "Package: netbase" in deb.control()


def test_tampered_packages_index_is_refused(mirror: LocalMirror, tmp_path: Path) -> None:
    mirror.flip_byte(PACKAGES_XZ)
    with _archive(mirror, tmp_path) as archive:
        expected, _ = archive.release().sha256["main/binary-amd64/Packages.xz"]
        with pytest.raises(VerificationError) as caught:
            archive.packages()
    message = caught.value.message
    assert "Packages.xz" in message and "sha256 mismatch" in message and expected in message
    assert not [f for f in _cache_files(tmp_path) if f.startswith("indexes")]


def test_tampered_inrelease_is_refused(mirror: LocalMirror, tmp_path: Path) -> None:
    data = mirror.path(INRELEASE).read_bytes()
    line = next(ln for ln in data.split(b"\n") if ln.endswith(b" main/binary-amd64/Packages.xz")
                and len(ln.split()[0]) == 64)
    digest = line.split()[0]
    mirror.replace(INRELEASE, digest, digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1"))
    with _archive(mirror, tmp_path) as archive, pytest.raises(VerificationError) as caught:
        archive.release()
    assert "InRelease" in caught.value.message
    assert "BAD signature" in caught.value.message


def test_unsigned_text_around_the_signed_block_is_refused(mirror: LocalMirror,
                                                          tmp_path: Path) -> None:
    data = mirror.path(INRELEASE).read_bytes()
    mirror.replace(INRELEASE, data, b"Origin: Evil\nSHA256:\n" + data)
    with _archive(mirror, tmp_path) as archive, pytest.raises(VerificationError):
        archive.release()


def test_keyring_without_the_signing_key_is_refused(mirror: LocalMirror,
                                                    tmp_path: Path) -> None:
    assert OTHER_KEYRING.exists(), f"{OTHER_KEYRING} is not installed"
    with _archive(mirror, tmp_path, keyring=OTHER_KEYRING) as archive:
        with pytest.raises(VerificationError) as caught:
            archive.release()
        assert "not in the keyring" in caught.value.message
        with pytest.raises(VerificationError):
            archive.packages()


def test_wrong_suite_and_missing_files(mirror: LocalMirror, tmp_path: Path) -> None:
    # A validly signed Release served for another suite name is refused (apt: "conflicting
    # distribution"); a suite the mirror lacks is a plain ArchiveError naming the URL.
    trixie = mirror.path("dists/trixie/InRelease")
    trixie.parent.mkdir(parents=True, exist_ok=True)
    trixie.write_bytes(mirror.path(INRELEASE).read_bytes())
    try:
        with (Archive(mirror.url, "trixie", keyring=KEYRING, cache_dir=tmp_path) as archive,
              pytest.raises(VerificationError, match="not 'trixie'")):
            archive.release()
    finally:
        trixie.unlink()
    with (Archive(mirror.url, "sid", keyring=KEYRING, cache_dir=tmp_path) as archive,
          pytest.raises(ArchiveError, match="dists/sid/InRelease")):
        archive.release()


def test_real_archive_resolves_python3(tmp_path: Path) -> None:
    assert _archive_reachable(), "deb.debian.org is not reachable"
    with Archive(cache_dir=tmp_path) as archive:
        index = archive.packages()
        chosen = resolve(index, ["python3"], arch="amd64", exclude={"debconf", "perl-base"})
        names = [r.name for r in chosen]
        assert names == sorted(names)
        assert {"python3", "python3.11", "libpython3.11-stdlib", "libc6", "libffi8"} <= set(names)
        assert not {"debconf", "perl-base"} & set(names)
        assert all(r.architecture in ("amd64", "all") for r in chosen)
        assert resolve(index, ["python3"], arch="amd64",
                       exclude={"debconf", "perl-base"}) == chosen
        python3 = next(r for r in chosen if r.name == "python3")
        with DebFile(archive.fetch_deb(python3)) as deb:  # one small download, verified
            assert "Package: python3\n" in deb.control()
