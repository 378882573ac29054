"""Streaming decompressors by file suffix, for archive indexes and .deb members."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from typing import IO

import zstandard

from distill.errors import ArchiveError

Decompressor = Callable[[IO[bytes]], IO[bytes]]

# What a damaged compressed stream raises while it is read.
ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError, ValueError)


def _none(raw: IO[bytes]) -> IO[bytes]:
    return raw


def _gzip(raw: IO[bytes]) -> IO[bytes]:
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def _xz(raw: IO[bytes]) -> IO[bytes]:  # also reads the legacy .lzma format
    return lzma.LZMAFile(raw)


def _bz2(raw: IO[bytes]) -> IO[bytes]:
    return bz2.BZ2File(raw)


def _zstd(raw: IO[bytes]) -> IO[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


_BY_SUFFIX: dict[str, Decompressor] = {
    "": _none, ".gz": _gzip, ".xz": _xz, ".lzma": _xz, ".bz2": _bz2, ".zst": _zstd,
}
SUFFIXES = tuple(_BY_SUFFIX)


def decompressor(suffix: str) -> Decompressor:
    """The decompressor for ``suffix`` ("" for none, ".xz", ".zst", ...)."""
    try:
        return _BY_SUFFIX[suffix]
    except KeyError:
        raise ArchiveError(f"unsupported compression {suffix!r}") from None
