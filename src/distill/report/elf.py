"""Just enough of an ELF file to find a section and read bytes at a virtual address.

The Go build-info reader (``distill.report.goinfo``) needs the ``.go.buildinfo``
section, or without section headers the first writable loadable segment, and, for
binaries of Go before 1.18, the bytes a pointer in that section points at. The file is
a hostile image's: every offset, count and size is checked against the bytes at hand,
and anything out of range reads as "not there" (None), never as an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"\x7fELF"
PT_LOAD = 1
PF_W = 2
SHT_NOBITS = 8
#: more headers than this is no binary distill should believe
MAX_HEADERS = 1 << 16


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int


@dataclass(frozen=True)
class Elf:
    """The headers of one ELF file and its bytes (``data``, possibly cut short)."""

    data: bytes
    bits: int                # 32 or 64
    big_endian: bool
    sections: tuple[Section, ...]
    segments: tuple[Segment, ...]

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_data(self, section: Section) -> bytes | None:
        if section.type == SHT_NOBITS:
            return None
        return self.slice(section.offset, section.size)

    def slice(self, offset: int, size: int) -> bytes | None:
        """``size`` bytes at file ``offset``, or None if the file does not hold them."""
        if offset < 0 or size < 0 or offset + size > len(self.data):
            return None
        return self.data[offset:offset + size]

    def read_at(self, vaddr: int, size: int) -> bytes | None:
        """``size`` bytes at virtual address ``vaddr``, from the loadable segment that
        holds them in the file; None if none does."""
        for seg in self.segments:
            if seg.type != PT_LOAD:
                continue
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                return self.slice(seg.offset + (vaddr - seg.vaddr), size)
        return None


def parse_elf(data: bytes) -> Elf | None:
    """The headers of ``data`` if it is an ELF file whose headers are in range."""
    if len(data) < 16 or not data.startswith(MAGIC):
        return None
    cls, order = data[4], data[5]
    if cls not in (1, 2) or order not in (1, 2):
        return None
    bits = 32 if cls == 1 else 64
    e = ">" if order == 2 else "<"
    header = f"{e}HHI{'III' if bits == 32 else 'QQQ'}IHHHHHH"
    try:
        (_, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
         shstrndx) = struct.unpack_from(header, data, 16)
    except struct.error:
        return None
    segments = _segments(data, e, bits, phoff, phentsize, phnum)
    sections = _sections(data, e, bits, shoff, shentsize, shnum, shstrndx)
    return Elf(data, bits, order == 2, sections, segments)


def _table(data: bytes, offset: int, entsize: int, count: int,
           fmt: str) -> list[tuple[int, ...]]:
    """``count`` entries of ``fmt`` every ``entsize`` bytes from ``offset``; none if the
    table is not wholly in ``data``."""
    need = struct.calcsize(fmt)
    if (offset <= 0 or count <= 0 or count > MAX_HEADERS or entsize < need
            or offset + entsize * count > len(data)):
        return []
    return [struct.unpack_from(fmt, data, offset + i * entsize) for i in range(count)]


def _segments(data: bytes, e: str, bits: int, phoff: int, phentsize: int,
              phnum: int) -> tuple[Segment, ...]:
    if bits == 64:
        rows = _table(data, phoff, phentsize, phnum, f"{e}IIQQQQQQ")
        return tuple(Segment(r[0], r[1], r[2], r[3], r[5]) for r in rows)
    rows = _table(data, phoff, phentsize, phnum, f"{e}IIIIIIII")
    return tuple(Segment(r[0], r[6], r[1], r[2], r[4]) for r in rows)


def _sections(data: bytes, e: str, bits: int, shoff: int, shentsize: int, shnum: int,
              shstrndx: int) -> tuple[Section, ...]:
    fmt = f"{e}IIQQQQIIQQ" if bits == 64 else f"{e}IIIIIIIIII"
    rows = _table(data, shoff, shentsize, shnum, fmt)
    if not rows:
        return ()
    names = b""
    if 0 < shstrndx < len(rows):
        strtab = rows[shstrndx]
        if strtab[1] != SHT_NOBITS and 0 <= strtab[4] and strtab[4] + strtab[5] <= len(data):
            names = data[strtab[4]:strtab[4] + strtab[5]]
    return tuple(Section(_name(names, r[0]), r[1], r[3], r[4], r[5]) for r in rows)


def _name(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("latin-1")
