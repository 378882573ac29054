"""How far an archive may expand: layers, ADD archives, imported root filesystems.

A small file can claim a huge expansion: gzip of zeros expands about 1000 times, bzip2,
xz and zstd far more, and a sparse tar member of a few bytes can declare terabytes. Every
unpacker in distill reads through :func:`limited_reader` (bytes out of a decompressor)
and :func:`open_tar` (tar members), so the limits live in one place:

* ``max_bytes``: the uncompressed bytes of one archive, and the sum of its members'
  sizes (a member's declared size is checked before any of it is written);
* ``max_ratio`` past ``ratio_grace``: once an archive has expanded beyond
  ``ratio_grace`` bytes, it may not be more than ``max_ratio`` times what was read of
  its compressed file (a gzip bomb stops there, ordinary layers are 2-20 times);
* ``max_entries``: members in one archive (each costs an inode);
* ``max_path`` and ``max_component``: bytes in a member's name or link target, and in
  one of its components (Linux's PATH_MAX and NAME_MAX);
* sparse members (GNU or PAX sparse) are refused: no image builder writes them, and
  they are the cheapest way to declare a huge file.

To change a limit, replace :data:`ARCHIVE_LIMITS` (e.g. ``dataclasses.replace``) before
distill unpacks anything; the functions also take ``limits=`` explicitly.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from distill.errors import DistillError

GiB = 1 << 30


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 32 * GiB
    max_ratio: int = 256
    ratio_grace: int = 1 * GiB
    max_entries: int = 1_000_000
    max_path: int = 4096
    max_component: int = 255


#: The limits every unpacker uses unless given others.
ARCHIVE_LIMITS = ArchiveLimits()


class ArchiveLimitError(DistillError):
    """An archive expands beyond one of distill's limits (a bomb, or a hostile layer)."""


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # unreachable


_HINT = "the limits are distill.limits.ARCHIVE_LIMITS"


class LimitedReader:
    """A read-only stream over ``stream`` (a decompressor) that hashes what it yields and
    stops with ArchiveLimitError past ``max_bytes`` or, with ``raw`` (the compressed
    file, for its ``tell()``), past ``max_ratio`` once ``ratio_grace`` bytes are out."""

    def __init__(self, stream: BinaryIO, what: str, *, raw: BinaryIO | None = None,
                 limits: ArchiveLimits | None = None) -> None:
        self._stream = stream
        self._raw = raw
        self.what = what
        self.limits = limits or ARCHIVE_LIMITS
        self.count = 0
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20  # never read a whole (possibly huge) stream at once
        data = self._stream.read(n)
        if data:
            self.count += len(data)
            self._hash.update(data)
            self._check()
        return data

    def readable(self) -> bool:
        return True

    def _check(self) -> None:
        lim = self.limits
        if self.count > lim.max_bytes:
            raise ArchiveLimitError(
                f"{self.what} expands to more than {_human(lim.max_bytes)} "
                f"(the limit for one archive)", hint=_HINT)
        if self._raw is None or self.count <= lim.ratio_grace:
            return
        try:
            packed = max(self._raw.tell(), 1)
        except (OSError, ValueError):
            return
        if self.count > lim.max_ratio * packed:
            raise ArchiveLimitError(
                f"{self.what} expands more than {lim.max_ratio} times "
                f"({_human(packed)} became over {_human(self.count)}): "
                f"refusing a decompression bomb", hint=_HINT)

    def drain(self) -> None:
        """Read (and hash) the rest of the stream: a diff_id covers every byte."""
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        """sha256 of everything read so far."""
        return self._hash.hexdigest()

    def close(self) -> None:
        pass


def limited_reader(stream: BinaryIO, what: str, *, raw: BinaryIO | None = None,
                   limits: ArchiveLimits | None = None) -> LimitedReader:
    """``stream`` as a LimitedReader (itself, if it already is one)."""
    if isinstance(stream, LimitedReader):
        return stream
    return LimitedReader(stream, what, raw=raw, limits=limits)


class _Guard:
    """Per-archive member checks: count, name lengths, sparse files, declared sizes."""

    def __init__(self, what: str, limits: ArchiveLimits) -> None:
        self.what = what
        self.limits = limits
        self.entries = 0
        self.declared = 0

    def check(self, member: tarfile.TarInfo) -> None:
        lim = self.limits
        self.entries += 1
        if self.entries > lim.max_entries:
            raise ArchiveLimitError(f"{self.what} has more than {lim.max_entries} entries",
                                    hint=_HINT)
        for label, value in (("name", member.name), ("link target", member.linkname)):
            encoded = value.encode("utf-8", "surrogateescape")
            if len(encoded) > lim.max_path:
                raise ArchiveLimitError(
                    f"{self.what}: an entry's {label} is {len(encoded)} bytes long "
                    f"(the limit is {lim.max_path}): {value[:80]!r}...", hint=_HINT)
            if label == "name" or member.islnk():
                # a whiteout ('.wh.' + a name of up to NAME_MAX) becomes that name on disk;
                # the longest component first, in C: a deep path's 2000 short ones are
                # not looked at one by one (an attacker's layer made that cost minutes)
                parts = encoded.split(b"/")
                long = [] if max(map(len, parts)) <= lim.max_component else [
                    p for p in parts if len(p) > lim.max_component
                    + (len(b".wh.") if p.startswith(b".wh.") else 0)]
                if long:
                    raise ArchiveLimitError(
                        f"{self.what}: entry {value[:80]!r}... has a path component of "
                        f"{len(long[0])} bytes (the limit is {lim.max_component})",
                        hint=_HINT)
        if "\0" in member.name or "\0" in member.linkname:
            raise ArchiveLimitError(f"{self.what}: entry {member.name!r} has a NUL in its name")
        for label, ident in (("uid", member.uid), ("gid", member.gid)):
            if not 0 <= ident < 0xFFFFFFFF:
                raise ArchiveLimitError(f"{self.what}: entry {member.name!r} has an invalid "
                                        f"{label} {ident}")
        if member.issparse():
            raise ArchiveLimitError(
                f"{self.what}: entry {member.name!r} is a sparse file "
                f"(declaring {_human(member.size)}); distill does not unpack sparse entries",
                hint="write the archive without --sparse")
        if member.isreg():
            self.declared += max(member.size, 0)
            if self.declared > lim.max_bytes:
                raise ArchiveLimitError(
                    f"{self.what}: entry {member.name!r} ({_human(member.size)}) takes the "
                    f"archive past {_human(lim.max_bytes)} (the limit for one archive)",
                    hint=_HINT)


#: An extended header (PAX, GNU long name or link) is read whole into memory before
#: its member is seen: none may be larger, as in Go's archive/tar (maxSpecialFileSize).
MAX_EXTENDED_HEADER = 1 << 20
_EXTENDED = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                       tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


class _ExtendedHeaderTooLarge(Exception):  # turned into an ArchiveLimitError
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _GuardedTarInfo(tarfile.TarInfo):
    """A member header that refuses an extended header too large to read."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise _ExtendedHeaderTooLarge(self.size)
        return super()._proc_member(tarfile)  # type: ignore[misc, no-any-return]


def _extended_header_error(what: str, size: int) -> ArchiveLimitError:
    return ArchiveLimitError(f"{what} has an extended header of {_human(size)} (the limit "
                             f"is {_human(MAX_EXTENDED_HEADER)})", hint=_HINT)


class _GuardedTarFile(tarfile.TarFile):
    """A stream-mode TarFile whose members pass ``_guard`` as they are read."""

    _guard: _Guard | None = None
    tarinfo = _GuardedTarInfo

    def next(self) -> tarfile.TarInfo | None:
        first = getattr(self, "firstmember", None)
        try:
            member = super().next()
        except _ExtendedHeaderTooLarge as e:
            raise _extended_header_error(self._guard.what if self._guard else "the archive",
                                         e.size) from None
        if member is not None and member is not first and self._guard is not None:
            self._guard.check(member)
        return member


def open_tar(stream: BinaryIO, what: str, *, raw: BinaryIO | None = None,
             limits: ArchiveLimits | None = None) -> tarfile.TarFile:
    """Open an uncompressed tar stream (``tarfile`` "r|" mode) under the limits.

    ``raw`` is the compressed file ``stream`` decompresses (for the ratio check); pass
    ``stream`` itself or None for an uncompressed tar. Raises ArchiveLimitError while
    iterating (or reading a member) when a limit is crossed, tarfile.TarError as tarfile
    does."""
    limits = limits or ARCHIVE_LIMITS
    reader = limited_reader(stream, what, raw=raw, limits=limits)
    try:
        tar: _GuardedTarFile = _GuardedTarFile.open(fileobj=reader, mode="r|")  # type: ignore[call-overload]
    except _ExtendedHeaderTooLarge as e:
        raise _extended_header_error(what, e.size) from None
    guard = _Guard(what, limits)
    # the stream's first member, read by open() before any guard was attached
    first: tarfile.TarInfo | None = getattr(tar, "firstmember", None)
    if first is not None:
        try:
            guard.check(first)
        except BaseException:
            tar.close()
            raise
    tar._guard = guard
    return tar


#: file times are kept within what every filesystem and ``utimensat`` accept
MAX_TIME_NS = 1 << 62


def member_time_ns(member: tarfile.TarInfo, field: str = "mtime") -> int:
    """A member's ``mtime`` (or ``atime``) in nanoseconds, within ±MAX_TIME_NS. A PAX
    time is read from its text, exactly ("1577934245.123456789"; digits past
    nanoseconds are cut, as Go's archive/tar cuts them): tarfile's float loses the
    last digits. A time that is no number ('nan', 'inf') is 0; an absent or broken
    atime is the mtime."""
    return max(-MAX_TIME_NS, min(_time_ns(member, field), MAX_TIME_NS))


def _time_ns(member: tarfile.TarInfo, field: str) -> int:
    text = member.pax_headers.get(field)
    if text is not None:
        negative = text[:1] == "-"
        whole, dot, fraction = text[negative:].partition(".")
        if whole.isascii() and whole.isdigit() and len(whole) <= 19 and (
                not dot or (fraction.isascii() and fraction.isdigit())):
            ns = int(whole) * 1_000_000_000 + int((fraction[:9] or "0").ljust(9, "0"))
            return -ns if negative else ns
        if field == "mtime":
            return 0
    if field != "mtime":
        return _time_ns(member, "mtime")
    try:
        return int(member.mtime * 1_000_000_000)
    except (ValueError, OverflowError, TypeError):
        return 0
