"""The build info a Go linker writes into every binary, read as ``go version -m`` does.

Go records the toolchain version and, for module builds, the main module, each
dependency (with its ``=>`` replacement) and the build settings, in a 32-byte header
starting ``\\xff Go buildinf:`` in the ``.go.buildinfo`` section (or, with section
headers stripped, at the start of the first writable segment). Go 1.18 and later store
the two strings inline after the header, each with a varint length; earlier versions
store pointers to Go string headers, which are followed through the loadable segments.
The SBOM (``distill.report.sbom``) turns the modules into ``pkg:golang`` packages.

The binary is a hostile image's: every length is checked against the bytes at hand,
and whatever cannot be read is None, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.report.elf import PF_W, PT_LOAD, Elf, parse_elf
from distill.report.layerfiles import Entry

BUILDINFO_MAGIC = b"\xff Go buildinf:"
HEADER_SIZE = 32
ALIGN = 16
#: how far into the first writable segment the header is looked for (Go reads 64 KiB)
SEARCH_LIMIT = 1 << 20
#: the longest version or module-info string believed
MAX_STRING = 1 << 20
#: smaller files are not Go binaries
MIN_BINARY = 1024
#: the head read first: enough for the ELF magic
ELF_HEAD = 64
#: the largest binary read for its build info (memory: the file is held while parsed)
MAX_BINARY = 256 << 20
FLAG_BIG_ENDIAN = 1
FLAG_INLINE = 2


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    sum: str = ""
    replace: GoModule | None = None


@dataclass(frozen=True)
class GoBuildInfo:
    go_version: str                   # "go1.21.5"
    path: str = ""                    # the main package's import path
    main: GoModule | None = None
    deps: tuple[GoModule, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()

    def setting(self, key: str) -> str | None:
        return next((v for k, v in self.settings if k == key), None)


class GoCollector:
    """Gives the SBOM the build info of every Go binary: executable regular files of
    at least 1 KiB whose head is ELF are read whole (up to MAX_BINARY: a larger binary's
    build info is not read) and kept if they have build info."""

    name = "go"

    def wants(self, entry: Entry) -> int:
        if entry.kind != "file" or not entry.mode & 0o111 or entry.size < MIN_BINARY:
            return 0
        return ELF_HEAD

    def more(self, entry: Entry, head: bytes) -> int:
        """The whole file, if its head is an ELF header (a script or a file of zeros
        marked executable is not read further), up to MAX_BINARY."""
        if entry.size > MAX_BINARY or not head.startswith(b"\x7fELF"):
            return 0
        return entry.size

    def parse(self, entry: Entry, data: bytes) -> GoBuildInfo | None:
        return read_buildinfo(data)


def read_buildinfo(data: bytes) -> GoBuildInfo | None:
    """The build info of the ELF binary ``data``; None if it has none that reads."""
    elf = parse_elf(data)
    if elf is None:
        return None
    found = _find_header(elf)
    if found is None:
        return None
    region, at = found
    flags = region[at + 15]
    if flags & FLAG_INLINE:
        version, pos = _varint_string(region, at + HEADER_SIZE)
        modinfo, _ = _varint_string(region, pos) if version is not None else (None, pos)
    else:
        version, modinfo = _pointed_strings(elf, region, at)
    if not version:
        return None
    return parse_modinfo(_decode(version), _strip_sentinels(modinfo or b""))


def _find_header(elf: Elf) -> tuple[bytes, int] | None:
    """The bytes holding the build-info header and the header's offset in them."""
    region: bytes | None = None
    section = elf.section(".go.buildinfo")
    if section is not None:
        region = elf.section_data(section)
    if region is None:
        seg = next((s for s in elf.segments if s.type == PT_LOAD and s.flags & PF_W), None)
        if seg is not None:
            size = min(seg.filesz, SEARCH_LIMIT, max(len(elf.data) - seg.offset, 0))
            region = elf.slice(seg.offset, size)
    if region is None:
        return None
    at = region.find(BUILDINFO_MAGIC)
    while at >= 0:
        if at % ALIGN == 0 and len(region) - at >= HEADER_SIZE:
            return region, at
        at = region.find(BUILDINFO_MAGIC, at + 1)
    return None


def _uvarint(data: bytes, pos: int) -> tuple[int, int] | None:
    """An unsigned LEB128 varint at ``pos``: its value and the position after it."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return None


def _varint_string(data: bytes, pos: int) -> tuple[bytes | None, int]:
    got = _uvarint(data, pos)
    if got is None:
        return None, pos
    n, start = got
    if n > MAX_STRING or start + n > len(data):
        return None, pos
    return data[start:start + n], start + n


def _pointed_strings(elf: Elf, region: bytes, at: int) -> tuple[bytes | None, bytes | None]:
    """Pre-1.18: two pointers after the magic, each to a Go string header (data
    pointer, length) somewhere in the loadable segments."""
    size = region[at + 14]
    if size not in (4, 8):
        return None, None
    big = bool(region[at + 15] & FLAG_BIG_ENDIAN)

    def pointer(raw: bytes | None, offset: int) -> int | None:
        if raw is None or offset + size > len(raw):
            return None
        return int.from_bytes(raw[offset:offset + size], "big" if big else "little")

    def string(addr: int | None) -> bytes | None:
        if addr is None:
            return None
        header = elf.read_at(addr, 2 * size)
        data_addr, length = pointer(header, 0), pointer(header, size)
        if data_addr is None or length is None or length > MAX_STRING:
            return None
        return elf.read_at(data_addr, length)

    return string(pointer(region, at + 16)), string(pointer(region, at + 16 + size))


def _strip_sentinels(modinfo: bytes) -> bytes:
    """The linker wraps the module info in 16 marker bytes at each end."""
    if len(modinfo) >= 33 and modinfo[-17] == ord("\n"):
        return modinfo[16:-16]
    return modinfo


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def parse_modinfo(go_version: str, modinfo: bytes) -> GoBuildInfo:
    """The module info text (``path``, ``mod``, ``dep``, ``=>``, ``build`` lines, as
    runtime/debug's BuildInfo writes them); lines that do not parse are skipped."""
    path = ""
    main: GoModule | None = None
    deps: list[GoModule] = []
    settings: list[tuple[str, str]] = []
    last = ""                        # "mod" or "dep": what a "=>" line replaces
    for line in _decode(modinfo).split("\n"):
        word, _, rest = line.partition("\t")
        if word == "go" and rest:
            go_version = rest
        elif word == "path":
            path = rest
        elif word in ("mod", "dep"):
            module = _module(rest)
            last = word if module is not None else ""
            if module is not None and word == "mod":
                main = module
            elif module is not None:
                deps.append(module)
        elif word == "=>" and last:
            replacement = _module(rest)
            if replacement is not None and last == "mod" and main is not None:
                main = GoModule(main.path, main.version, main.sum, replacement)
            elif replacement is not None and last == "dep" and deps:
                old = deps[-1]
                deps[-1] = GoModule(old.path, old.version, old.sum, replacement)
            last = ""
        elif word == "build":
            setting = _setting(rest)
            if setting is not None:
                settings.append(setting)
    return GoBuildInfo(go_version, path, main, tuple(deps), tuple(settings))


def _module(fields: str) -> GoModule | None:
    parts = fields.split("\t")
    if len(parts) not in (2, 3) or not parts[0]:
        return None
    return GoModule(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def _setting(kv: str) -> tuple[str, str] | None:
    """``key=value`` with either side possibly Go-quoted."""
    if kv[:1] in ('"', "`"):
        quoted = _unquote_prefix(kv)
        if quoted is None:
            return None
        key, kv = quoted
        if not kv.startswith("="):
            return None
        raw = kv[1:]
    else:
        key, eq, raw = kv.partition("=")
        if not eq or not key:
            return None
    if raw[:1] in ('"', "`"):
        quoted = _unquote_prefix(raw)
        if quoted is None or quoted[1]:
            return None
        raw = quoted[0]
    return key, raw


_ESCAPE = re.compile(r'\\(?:([abfnrtv\\\'"])|x([0-9A-Fa-f]{2})|([0-7]{3})'
                     r'|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))')
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
           "\\": "\\", "'": "'", '"': '"'}


def _unquote_prefix(s: str) -> tuple[str, str] | None:
    """A Go string literal (strconv.QuotedPrefix) at the start of ``s``: its value and
    what follows it; None if it is not one."""
    if s.startswith("`"):
        end = s.find("`", 1)
        return (s[1:end], s[end + 1:]) if end > 0 else None
    out = bytearray()
    i = 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return _decode(bytes(out)), s[i + 1:]
        if c == "\n":
            return None
        if c != "\\":
            out += c.encode("utf-8", errors="replace")
            i += 1
            continue
        m = _ESCAPE.match(s, i)
        if m is None:
            return None
        simple, hexbyte, octal, u4, u8 = m.groups()
        if simple is not None:
            out += _SIMPLE[simple].encode()
        elif hexbyte is not None or octal is not None:
            value = int(hexbyte, 16) if hexbyte is not None else int(octal, 8)
            if value > 0xFF:
                return None
            out.append(value)
        else:
            point = int(u4 or u8, 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                return None
            out += chr(point).encode()
        i = m.end()
    return None
