"""Reading a .deb: an ar archive of debian-binary, control.tar[.*] and data.tar[.*].

The layout follows deb(5): ``debian-binary`` ("2.x") comes first, then the control
tarball, then the data tarball; members whose names start with ``_`` are ignored. The
data tarball is streamed through its decompressor (xz, zstd, gzip, bzip2 or none); it is
never read whole into memory. The control tarball is small and is read at once.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Self

from distill.debian.compression import ERRORS as DECOMPRESSION_ERRORS
from distill.debian.compression import decompressor
from distill.errors import ArchiveError

_AR_MAGIC = b"!<arch>\n"
_HEADER = 60
_CONTROL_LIMIT = 64 << 20
_TARBALL = re.compile(r"(?P<kind>control|data)\.tar(?P<suffix>(?:\.(?:gz|xz|lzma|bz2|zst))?)")


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int
    size: int


class DebFile:
    """A .deb opened for reading; use as a context manager (or call close())."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._file = self.path.open("rb")
        except OSError as exc:
            raise ArchiveError(f"{self.path}: cannot open: {exc.strerror}") from exc
        self._streams: list[IO[bytes]] = []
        self._control: dict[str, bytes] | None = None
        try:
            members = _read_ar(self._file, self.path)
            self._control_member, self._data_member = _check_layout(members, self._file,
                                                                    self.path)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        self._file.close()

    def control(self) -> str:
        """The text of the package's control file."""
        data = self.control_member("control")
        if data is None:
            raise ArchiveError(f"{self.path}: no control file in {self._control_member.name}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArchiveError(f"{self.path}: control file is not UTF-8") from exc

    def control_member(self, name: str) -> bytes | None:
        """A file of the control tarball (``md5sums``, ``conffiles``, ``postinst``...)."""
        if self._control is None:
            self._control = self._read_control()
        return self._control.get(name.removeprefix("./"))

    def data_tar(self) -> BinaryIO:
        """A fresh, uncompressed stream of the data tarball (read it with ``tarfile`` "r|")."""
        stream = self._open_member(self._data_member)
        self._streams.append(stream)
        return stream  # type: ignore[return-value]

    def _open_member(self, member: _Member) -> IO[bytes]:
        match = _TARBALL.fullmatch(member.name)
        suffix = match["suffix"] if match is not None else ""
        raw = io.BufferedReader(_Slice(self._file.fileno(), member.offset, member.size),
                                1 << 16)
        try:
            inner = decompressor(suffix)(raw)
        except DECOMPRESSION_ERRORS as exc:
            raise ArchiveError(f"{self.path}: {member.name}: {exc}") from exc
        return io.BufferedReader(_Checked(inner, f"{self.path}: {member.name}"), 1 << 16)

    def _read_control(self) -> dict[str, bytes]:
        member = self._control_member
        files: dict[str, bytes] = {}
        with self._open_member(member) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    total = 0
                    for info in tar:
                        if not info.isfile():
                            continue
                        total += info.size
                        if total > _CONTROL_LIMIT:
                            raise ArchiveError(f"{self.path}: {member.name} is too large")
                        extracted = tar.extractfile(info)
                        if extracted is not None:
                            files[info.name.removeprefix("./")] = extracted.read()
            except tarfile.TarError as exc:
                raise ArchiveError(f"{self.path}: {member.name}: {exc}") from exc
        return files


def _read_ar(f: BinaryIO, path: Path) -> list[_Member]:
    total = os.fstat(f.fileno()).st_size
    if f.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise ArchiveError(f"{path}: not a .deb (no ar archive signature)")
    members: list[_Member] = []
    pos = len(_AR_MAGIC)
    while pos < total:
        f.seek(pos)
        header = f.read(_HEADER)
        if len(header) < _HEADER or header[58:60] != b"`\n":
            raise ArchiveError(f"{path}: truncated or corrupt ar member header at {pos}")
        name = header[:16].decode("ascii", "replace").rstrip(" ").removesuffix("/")
        size_text = header[48:58].decode("ascii", "replace").strip()
        if not size_text.isdigit():
            raise ArchiveError(f"{path}: ar member {name!r}: bad size {size_text!r}")
        size = int(size_text)
        offset = pos + _HEADER
        if offset + size > total:
            raise ArchiveError(f"{path}: ar member {name!r} is truncated "
                               f"({size} bytes declared, {total - offset} present)")
        members.append(_Member(name, offset, size))
        pos = offset + size + (size & 1)
    return members


def _check_layout(members: list[_Member], f: BinaryIO, path: Path) -> tuple[_Member, _Member]:
    if not members or members[0].name != "debian-binary":
        raise ArchiveError(f"{path}: not a .deb (first member is not debian-binary)")
    f.seek(members[0].offset)
    version = f.read(min(members[0].size, 16))
    if not version.startswith(b"2."):
        raise ArchiveError(f"{path}: unsupported .deb format version {version!r}")
    control: _Member | None = None
    data: _Member | None = None
    for member in members[1:]:
        if member.name.startswith("_"):
            continue
        match = _TARBALL.fullmatch(member.name)
        if match is None:
            raise ArchiveError(f"{path}: unexpected member {member.name!r}")
        if match["kind"] == "control":
            if control is not None or data is not None:
                raise ArchiveError(f"{path}: misplaced or duplicate {member.name!r}")
            control = member
        else:
            if control is None or data is not None:
                raise ArchiveError(f"{path}: misplaced or duplicate {member.name!r}")
            data = member
    if control is None or data is None:
        raise ArchiveError(f"{path}: lacks a {'control' if control is None else 'data'} "
                           "tarball")
    return control, data


class _Slice(io.RawIOBase):
    """Bytes [offset, offset+size) of a file descriptor, read with pread (no shared seek)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._pos = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._end - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise ArchiveError("unexpected end of .deb file")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _Checked(io.RawIOBase):
    """Reads ``inner``; turns decompression failures into ArchiveError naming ``where``."""

    def __init__(self, inner: IO[bytes], where: str) -> None:
        self._inner = inner
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except ArchiveError:
            raise
        except DECOMPRESSION_ERRORS as exc:
            raise ArchiveError(f"{self._where}: corrupt: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()
