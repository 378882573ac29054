"""Reading layer blobs: the uncompressed tar stream, under the archive limits, hashed.

Every layer distill unpacks or imports is read here, and its diff_id (the sha256 of the
uncompressed tar) is computed from the bytes, never taken from a config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from isal import igzip
from isal.igzip_lib import IsalError

from distill.errors import DigestMismatchError, ImageError
from distill.limits import ArchiveLimits, LimitedReader, limited_reader
from distill.oci import mediatypes as mt
from distill.oci.digest import Digest

SUPPORTED_LAYERS = mt.GZIP_LAYERS + (mt.OCI_LAYER_TAR, mt.OCI_LAYER_ZSTD)
#: What a gzip reader raises for data that is not gzip (isal's error is untyped).
GZIP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, IsalError)  # type: ignore[assignment]


class _CheckedGzip:
    """A gzip reader whose format errors are ImageErrors naming the layer."""

    def __init__(self, raw: BinaryIO, what: str) -> None:
        self._gz = igzip.IGzipFile(fileobj=raw, mode="rb")
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._gz.read(n)
        except GZIP_ERRORS as exc:
            raise ImageError(f"{self._what} is labelled gzip but is not valid gzip data: "
                             f"{exc}") from None

    def close(self) -> None:
        self._gz.close()


class _CheckedZstd:
    """A zstd reader (all frames, windows up to 128 MiB) whose errors are ImageErrors."""

    def __init__(self, raw: BinaryIO, what: str) -> None:
        import zstandard

        self._errors = (zstandard.ZstdError,)
        self._reader = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(
            raw, read_across_frames=True)
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(n)
        except self._errors as exc:
            raise ImageError(f"{self._what} is labelled zstd but is not valid zstd data: "
                             f"{exc}") from None

    def close(self) -> None:
        self._reader.close()


def check_media_type(media_type: str, what: str) -> None:
    if media_type not in SUPPORTED_LAYERS:
        raise ImageError(f"{what}: layer media type {media_type!r} is not supported",
                         hint="distill reads gzip, zstd and uncompressed tar layers")


@contextmanager
def open_layer_stream(raw: BinaryIO, media_type: str, what: str,
                      limits: ArchiveLimits | None = None) -> Iterator[LimitedReader]:
    """The uncompressed tar of a layer blob opened as ``raw``; ``what`` names it in errors.

    The reader hashes what passes (``drain()`` then ``hexdigest()``) and stops at the
    limits of ``distill.limits``."""
    check_media_type(media_type, what)
    if media_type in mt.GZIP_LAYERS:
        gz = _CheckedGzip(raw, what)
        try:
            yield limited_reader(gz, what, raw=raw, limits=limits)  # type: ignore[arg-type]
        finally:
            gz.close()
    elif media_type == mt.OCI_LAYER_ZSTD:
        zst = _CheckedZstd(raw, what)
        try:
            yield limited_reader(zst, what, raw=raw, limits=limits)  # type: ignore[arg-type]
        finally:
            zst.close()
    else:
        yield limited_reader(raw, what, limits=limits)


def verify_diff_id(stream: LimitedReader, diff_id: Digest, what: str) -> None:
    """Raise DigestMismatchError unless everything read from ``stream`` hashes to diff_id."""
    computed = Digest.from_hex(stream.hexdigest())
    if computed != diff_id:
        raise DigestMismatchError(
            f"{what} unpacks to {computed}, but the image config says {diff_id}",
            hint="the image is corrupt or was made to pass one layer off as another")


def compute_diff_id(raw: BinaryIO, media_type: str, what: str,
                    limits: ArchiveLimits | None = None) -> tuple[Digest, int]:
    """Hash a layer blob's uncompressed tar: (diff_id, uncompressed size)."""
    with open_layer_stream(raw, media_type, what, limits) as stream:
        stream.drain()
    return Digest.from_hex(stream.hexdigest()), stream.count
