"""HTTP downloads that are verified before they exist.

A download streams into a temp file next to its destination while it is hashed; it is
renamed into place only when its size and sha256 are the expected ones, so a cache
directory never holds an unverified file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, BinaryIO

import httpx

from distill.errors import STORAGE_ERRNOS, ArchiveError, VerificationError, os_failure

_CHUNK = 1 << 16


class NotFoundError(ArchiveError):
    """The server answered 404 (or 410) for every URL tried."""


def new_client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=True,
                        headers={"User-Agent": "distill (+debian archive client)"})


def get_small(client: httpx.Client, url: str, *, limit: int) -> bytes:
    """The body of ``url`` (at most ``limit`` bytes); ArchiveError naming the URL otherwise."""
    buf = bytearray()
    try:
        with client.stream("GET", url) as response:
            _check_status(response, url)
            for chunk in response.iter_bytes(_CHUNK):
                buf += chunk
                if len(buf) > limit:
                    raise ArchiveError(f"{url}: larger than {limit} bytes")
    except httpx.HTTPError as exc:
        raise ArchiveError(f"{url}: {_describe(exc)}") from exc
    return bytes(buf)


def file_matches(path: Path, sha256: str, size: int) -> bool:
    """Whether ``path`` exists with exactly this size and sha256."""
    try:
        if path.stat().st_size != size:
            return False
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except FileNotFoundError:
        return False


def download_verified(client: httpx.Client, urls: Sequence[str], dest: Path, *,
                      sha256: str, size: int, what: str) -> Path:
    """Fetch the first of ``urls`` the server has into ``dest``, verified; returns ``dest``.

    A 404 moves on to the next URL; a network error raises ArchiveError; a size or hash
    mismatch raises VerificationError naming ``what``, the URL, expected and actual.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, count = _stream(client, url, out, size=size, what=what)
            if count != size:
                raise VerificationError(f"{what}: size mismatch for {url}: expected {size} "
                                        f"bytes, got {count}")
            if digest != sha256:
                raise VerificationError(f"{what}: sha256 mismatch for {url}: expected "
                                        f"{sha256}, got {digest}")
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached files are world-readable
            os.replace(tmp, dest)
            return dest
        except NotFoundError:
            missing.append(url)
        except OSError as e:
            if e.errno not in STORAGE_ERRNOS:
                raise
            raise os_failure(e, f"cannot write {what} to", dest.parent) from None
        finally:
            tmp.unlink(missing_ok=True)
    raise NotFoundError(f"{what}: not found (404) at " + ", ".join(missing))


def _stream(client: httpx.Client, url: str, out: BinaryIO, *, size: int,
            what: str) -> tuple[str, int]:
    h = hashlib.sha256()
    count = 0
    try:
        with client.stream("GET", url) as response:
            _check_status(response, url)
            for chunk in response.iter_bytes(_CHUNK):
                count += len(chunk)
                if count > size:
                    raise VerificationError(f"{what}: size mismatch for {url}: expected "
                                            f"{size} bytes, got more")
                h.update(chunk)
                out.write(chunk)
    except httpx.HTTPError as exc:
        raise ArchiveError(f"{url}: {_describe(exc)}") from exc
    return h.hexdigest(), count


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code in (404, 410):
        raise NotFoundError(f"{url}: not found ({response.status_code})")
    if response.status_code != 200:
        raise ArchiveError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HashingReader(io.RawIOBase):
    """Reads through ``inner``, counting and hashing every byte it passes on."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        self.count += n
        return n

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
