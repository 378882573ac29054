"""Content digests (``sha256:<hex>``): parsing, computing, hashing streams."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from distill.errors import ImageError

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated sha256 digest."""

    value: str

    def __post_init__(self) -> None:
        if not _DIGEST.fullmatch(self.value):
            raise ImageError(f"invalid digest {self.value!r}")

    @property
    def hex(self) -> str:
        return self.value.split(":", 1)[1]

    @property
    def algorithm(self) -> str:
        return "sha256"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hex(cls, hexdigest: str) -> Digest:
        return cls("sha256:" + hexdigest)


class HashingWriter:
    """A write-only stream that hashes and counts what passes to an inner stream."""

    def __init__(self, inner: BinaryIO | None) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self._inner is not None:
            self._inner.write(data)
        return len(data)

    def flush(self) -> None:
        if self._inner is not None:
            self._inner.flush()

    def digest(self) -> Digest:
        return Digest.from_hex(self._hash.hexdigest())


def digest_file(path: str, chunk: int = 1 << 20) -> tuple[Digest, int]:
    """Hash a file without holding it in memory; returns (digest, size)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return Digest.from_hex(h.hexdigest()), size
