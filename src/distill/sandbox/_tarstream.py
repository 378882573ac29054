"""A small, fast, streaming tar writer (ustar headers, PAX records only when needed).

Python's tarfile spends most of a layer's time building headers; layers hold
tens of thousands of entries, so this writes them directly. The output is a
POSIX pax archive that GNU tar, Go's archive/tar and Python's tarfile all read.
"""

from __future__ import annotations

import os
from typing import BinaryIO

BLOCK = 512
REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
_PAX = b"x"
_ZEROS = bytes(BLOCK)
_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for ustar, or None if the path cannot be split to fit."""
    if len(name) <= 100:
        return b"", name
    for i in range(min(len(name) - 1, 155), 0, -1):
        if name[i:i + 1] == b"/" and len(name) - i - 1 <= 100 and i <= 155:
            return name[:i], name[i + 1:]
    return None


class TarStream:
    """Write tar entries to a write-only stream; call ``close()`` for the end marker."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def _header(self, name: bytes, prefix: bytes, mode: int, uid: int, gid: int, size: int,
                mtime: int, kind: bytes, linkname: bytes, devmajor: int, devminor: int) -> bytes:
        parts = [
            name.ljust(100, b"\0"), _octal(mode & 0o7777, 8), _octal(uid, 8), _octal(gid, 8),
            _octal(size, 12), _octal(mtime, 12), b"        ", kind,
            linkname.ljust(100, b"\0"), b"ustar\x0000", bytes(32), bytes(32),
            _octal(devmajor, 8), _octal(devminor, 8), prefix.ljust(155, b"\0"), bytes(12),
        ]
        header = bytearray(b"".join(parts))
        header[148:156] = b"%06o\0 " % sum(header)
        return bytes(header)

    def add(self, name: str, kind: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
            size: int = 0, mtime: int = 0, linkname: str = "", devmajor: int = 0,
            devminor: int = 0, xattrs: dict[str, bytes] | None = None,
            mtime_ns: int | None = None) -> None:
        """Write one header (PAX-extended where ustar cannot hold a field).

        ``mtime_ns``: the time in nanoseconds; a time that is not whole seconds gets a
        PAX ``mtime`` record with its fraction (as Go's archive/tar writes one, trailing
        zeros dropped), the ustar field its whole seconds."""
        bname = os.fsencode(name)
        blink = os.fsencode(linkname)
        pax: list[bytes] = []
        split = _split_name(bname) if bname.isascii() else None
        if split is None:
            pax.append(_pax_record("path", bname))
            split = (b"", bname[:100] if bname.isascii() else b"pax-entry")
        if len(blink) > 100 or not blink.isascii():
            pax.append(_pax_record("linkpath", blink))
            blink = blink[:100] if blink.isascii() else b""
        if uid > _MAX_OCTAL_7:
            pax.append(_pax_record("uid", str(uid).encode()))
            uid = 0
        if gid > _MAX_OCTAL_7:
            pax.append(_pax_record("gid", str(gid).encode()))
            gid = 0
        if size > _MAX_OCTAL_11:
            pax.append(_pax_record("size", str(size).encode()))
        if mtime_ns is not None and mtime_ns % 1_000_000_000 and \
                0 <= mtime_ns // 1_000_000_000 <= _MAX_OCTAL_11:
            seconds, fraction = divmod(mtime_ns, 1_000_000_000)
            pax.append(_pax_record("mtime", f"{seconds}.{fraction:09d}".rstrip("0").encode()))
            mtime = seconds
        elif not 0 <= mtime <= _MAX_OCTAL_11:
            pax.append(_pax_record("mtime", str(mtime).encode()))
            mtime = 0 if mtime < 0 else _MAX_OCTAL_11
        for key in sorted(xattrs or {}):
            pax.append(_pax_record("SCHILY.xattr." + key, (xattrs or {})[key]))
        if pax:
            data = b"".join(pax)
            self.out.write(self._header(b"PaxHeaders/" + split[1][-80:], b"", 0o644, 0, 0,
                                        len(data), mtime, _PAX, b"", 0, 0))
            self._data(data)
        self.out.write(self._header(split[1], split[0], mode, uid, gid,
                                    min(size, _MAX_OCTAL_11), mtime, kind, blink,
                                    devmajor, devminor))

    def _data(self, data: bytes) -> None:
        self.out.write(data)
        if len(data) % BLOCK:
            self.out.write(_ZEROS[: BLOCK - len(data) % BLOCK])

    def add_file(self, name: str, fd: int, size: int, **fields: object) -> None:
        """A regular file whose content is read from ``fd`` (exactly ``size`` bytes)."""
        self.add(name, REG, size=size, **fields)  # type: ignore[arg-type]
        remaining = size
        while remaining:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                raise OSError(f"{name}: file shrank while being archived")
            self.out.write(chunk)
            remaining -= len(chunk)
        if size % BLOCK:
            self.out.write(_ZEROS[: BLOCK - size % BLOCK])

    def close(self) -> None:
        self.out.write(_ZEROS * 2)
