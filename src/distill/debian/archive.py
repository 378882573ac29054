"""A Debian archive (mirror) as a chain of verified downloads.

InRelease is verified with gpgv against the keyring; every index is checked against the
size and sha256 the signed Release gives; every .deb against its Packages entry. Nothing
is parsed or returned before it has been verified, and nothing unverified is cached.
"""

from __future__ import annotations

import io
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import httpx

from distill.debian.compression import ERRORS as DECOMPRESSION_ERRORS
from distill.debian.compression import Decompressor, decompressor
from distill.debian.control import PackageRecord, Release, parse_packages, parse_release
from distill.debian.download import (
    HashingReader,
    NotFoundError,
    download_verified,
    file_matches,
    get_small,
    new_client,
)
from distill.errors import ArchiveError, VerificationError
from distill.sandbox.gpg import verify_clearsigned

__all__ = ["DEFAULT_KEYRING", "DEFAULT_MIRROR", "SECURITY_MIRROR", "Archive", "PackageRecord",
           "Release"]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Where Debian's security updates for a stable release are (suite CODENAME-security).
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

_INRELEASE_LIMIT = 64 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: What a suite (bookworm, bookworm-security) and a Debian architecture may be: they
#: become parts of URLs and of /etc/os-release.
SUITE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")
ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SAFE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~%-]*(/[A-Za-z0-9][A-Za-z0-9._+~%-]*)*")
# Index compressions in order of preference (bookworm serves .xz and .gz).
_INDEX_SUFFIXES = (".xz", ".gz", ".bz2", "")


class Archive:
    """One suite and architecture of a Debian mirror, verified from the keyring down."""

    def __init__(self, mirror: str = DEFAULT_MIRROR, suite: str = "bookworm",
                 arch: str = "amd64", *, components: Sequence[str] = ("main",),
                 keyring: Path = DEFAULT_KEYRING, cache_dir: Path | None = None,
                 client: httpx.Client | None = None, check_valid_until: bool = True) -> None:
        if not re.fullmatch(r"https?://[^\s]+", mirror):
            raise ArchiveError(f"mirror {mirror!r} is not an http(s) URL")
        if not SUITE.fullmatch(suite):
            raise ArchiveError(f"suite {suite!r} is not a Debian suite name")
        if not ARCH.fullmatch(arch):
            raise ArchiveError(f"architecture {arch!r} is not a Debian architecture name")
        self.mirror = mirror.rstrip("/")
        self.suite = suite
        self.arch = arch
        self.components = tuple(components)
        self.keyring = keyring
        self.check_valid_until = check_valid_until
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="distill-archive-")
            cache_dir = Path(self._tmp.name)
        self.cache_dir = cache_dir
        self._owns_client = client is None
        self._client = client if client is not None else new_client()
        self._release: Release | None = None
        self._packages: dict[str, list[PackageRecord]] | None = None

    def __repr__(self) -> str:
        return f"Archive({self.mirror!r}, {self.suite!r}, {self.arch!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client (if this object made it) and remove a private cache dir."""
        if self._owns_client:
            self._client.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- the chain of trust ------------------------------------------------------------

    def release(self) -> Release:
        """dists/SUITE/InRelease, signature-verified, parsed and checked; cached."""
        if self._release is None:
            url = f"{self.mirror}/dists/{self.suite}/InRelease"
            signed = get_small(self._client, url, limit=_INRELEASE_LIMIT)
            try:
                text = verify_clearsigned(signed, self.keyring)
            except VerificationError as exc:
                raise VerificationError(f"{url}: {exc.message}", hint=exc.hint) from exc
            try:
                release = parse_release(text.decode("utf-8"), where=url)
            except UnicodeDecodeError as exc:
                raise ArchiveError(f"{url}: not UTF-8 text") from exc
            self._check_release(release, url)
            self._release = release
        return self._release

    def _check_release(self, release: Release, url: str) -> None:
        if self.suite not in (release.suite, release.codename):
            # apt's "conflicting distribution": a validly signed Release of another suite.
            raise VerificationError(
                f"{url}: signed for suite {release.suite!r} (codename {release.codename!r}),"
                f" not {self.suite!r}")
        if (self.check_valid_until and release.valid_until_epoch is not None
                and release.valid_until_epoch < time.time()):
            raise VerificationError(f"{url}: expired (Valid-Until has passed)",
                                    hint="an old Release replayed? (check_valid_until=False "
                                         "for snapshot mirrors)")
        if release.architectures and self.arch not in release.architectures:
            raise ArchiveError(f"{url}: no architecture {self.arch!r} "
                               f"(has {', '.join(release.architectures)})")
        for component in self.components:
            # debian-security names its components updates/main, ... (apt reads main)
            if release.components and component not in release.components and \
                    f"updates/{component}" not in release.components:
                raise ArchiveError(f"{url}: no component {component!r} "
                                   f"(has {', '.join(release.components)})")

    def packages(self) -> dict[str, list[PackageRecord]]:
        """Package name -> records (for ARCH and "all") from every component; cached."""
        if self._packages is None:
            index: dict[str, list[PackageRecord]] = {}
            for component in self.components:
                for rec in self._component_packages(component):
                    versions = index.setdefault(rec.name, [])
                    if rec not in versions:
                        versions.append(rec)
            self._packages = index
        return self._packages

    def _component_packages(self, component: str) -> list[PackageRecord]:
        release = self.release()
        directory = f"{component}/binary-{self.arch}"
        base = f"{self.mirror}/dists/{self.suite}"
        plain = release.sha256.get(f"{directory}/Packages")
        tried: list[str] = []
        for suffix in _INDEX_SUFFIXES:
            path = f"{directory}/Packages{suffix}"
            entry = release.sha256.get(path)
            if entry is None:
                continue
            sha256, size = entry
            urls = [f"{base}/{path}"]
            if release.acquire_by_hash:  # immune to the mirror updating mid-download
                urls.insert(0, f"{base}/{directory}/by-hash/SHA256/{sha256}")
            dest = self.cache_dir / "indexes" / sha256
            if not file_matches(dest, sha256, size):
                try:
                    download_verified(self._client, urls, dest, sha256=sha256, size=size,
                                      what=f"dists/{self.suite}/{path}")
                except NotFoundError:
                    tried.append(path)
                    continue
            return _read_index(dest, decompressor(suffix), plain, arch=self.arch,
                               where=f"{base}/{path}")
        if not tried:
            raise ArchiveError(f"{base}/InRelease lists no Packages index for {directory}")
        raise ArchiveError(f"{base}: no Packages index for {directory} could be downloaded "
                           f"(tried {', '.join(tried)})")

    def fetch_deb(self, rec: PackageRecord, mirror: str | None = None) -> Path:
        """The .deb of ``rec`` in the cache (content-addressed), verified; downloads if needed
        (from ``mirror``, when the record came from another archive of the same lock: the
        sha256 it must have was read from that archive's signed index)."""
        if mirror is not None and not re.fullmatch(r"https?://[^\s]+", mirror):
            raise ArchiveError(f"mirror {mirror!r} is not an http(s) URL")
        if not _HEX64.fullmatch(rec.sha256):
            raise ArchiveError(f"{rec.name}: SHA256 {rec.sha256!r} is not a sha256")
        if not _SAFE_PATH.fullmatch(rec.filename) or ".." in rec.filename.split("/"):
            raise ArchiveError(f"{rec.name}: unsafe Filename {rec.filename!r}")
        dest = self.cache_dir / "debs" / f"{rec.sha256}.deb"
        if file_matches(dest, rec.sha256, rec.size):
            return dest
        dest.unlink(missing_ok=True)  # a damaged cache entry is replaced, never used
        url = f"{(mirror or self.mirror).rstrip('/')}/{rec.filename}"
        try:
            return download_verified(self._client, [url], dest, sha256=rec.sha256,
                                     size=rec.size, what=f"{rec.name} {rec.version}")
        except NotFoundError as exc:
            raise ArchiveError(f"{url}: not found (404) for {rec.name} {rec.version}",
                               hint="the mirror may have dropped this version; "
                                    "refresh the lock") from exc


def _read_index(path: Path, decompress: Decompressor,
                plain: tuple[str, int] | None, *, arch: str, where: str) -> list[PackageRecord]:
    """Parse a verified, compressed index; the uncompressed text is checked too if listed."""
    try:
        with path.open("rb") as raw, decompress(raw) as stream:
            reader = HashingReader(stream)
            text = io.TextIOWrapper(io.BufferedReader(reader, 1 << 20), encoding="utf-8")
            records = list(parse_packages(text, arch=arch, where=where))
    except (*DECOMPRESSION_ERRORS, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{where}: cannot decompress: {exc}") from exc
    if plain is not None and (reader.hexdigest(), reader.count) != plain:
        raise VerificationError(f"{where}: uncompressed content does not match Release: "
                                f"expected sha256 {plain[0]} ({plain[1]} bytes), got "
                                f"{reader.hexdigest()} ({reader.count} bytes)")
    return records
