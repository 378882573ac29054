"""deb822 text (Release, Packages, control files) into values.

A paragraph is a run of ``Key: value`` lines; continuation lines start with a space or a
tab and stay part of the value (joined by newlines, their leading blank kept), so
``f"{key}: {value}"`` per field writes the paragraph back as it was.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import TextIO

from distill.errors import ArchiveError

Paragraph = tuple[tuple[str, str], ...]
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A field: its name, then the rest of its line and every continuation line after it.
_FIELD = re.compile(r"^([^\s:#][^\s:]*):[ \t]*(.*(?:\n[ \t].*)*)", re.MULTILINE)
# A line that neither starts a field, continues one, nor is a comment.
_NOT_A_FIELD = re.compile(r"^(?![ \t#]|[^\s:#][^\s:]*:)", re.MULTILINE)
# Paragraphs are separated by one or more blank (or whitespace-only) lines.
_SEPARATOR = re.compile(r"\n(?:[ \t\r]*\n)+")
_TRAILING_BLANKS = re.compile(r"[ \t\r]+$", re.MULTILINE)


@dataclass(frozen=True)
class PackageRecord:
    """One binary package as an archive index describes it."""

    name: str
    version: str
    architecture: str
    filename: str
    sha256: str
    size: int
    fields: Paragraph = ()

    def field(self, key: str) -> str:
        """The value of ``key`` (case-insensitive, as in deb822), or "" if absent."""
        for k, v in self.fields:
            if k == key:
                return v
        return lookup(self.fields, key)

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.architecture})"


@dataclass(frozen=True)
class Release:
    """What a suite's signed Release file says about itself and its indexes."""

    suite: str
    codename: str
    date: str
    date_epoch: int
    sha256: Mapping[str, tuple[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    valid_until_epoch: int | None = None
    acquire_by_hash: bool = False
    architectures: tuple[str, ...] = ()
    components: tuple[str, ...] = ()


def iter_paragraphs(source: str | TextIO, *, chunk_size: int = 1 << 20) -> Iterator[Paragraph]:
    """Paragraphs of a deb822 text, read from a string or streamed from a text file."""
    stream = io.StringIO(source) if isinstance(source, str) else source
    rest = ""
    while True:
        chunk = stream.read(chunk_size)
        parts = _SEPARATOR.split(rest + chunk)
        rest = parts.pop() if chunk else ""
        for part in parts:
            paragraph = _paragraph(part)
            if paragraph:
                yield paragraph
        if not chunk:
            return


def _paragraph(text: str) -> Paragraph:
    text = text.strip("\n")
    if not text.strip():
        return ()
    if " \n" in text or "\t\n" in text or "\r" in text or text[-1] in " \t":
        text = _TRAILING_BLANKS.sub("", text)  # values never end in blanks
    intern = sys.intern
    fields = tuple([(intern(key), value) for key, value in _FIELD.findall(text)])
    starts = text.count("\n") + 1 - text.count("\n ") - text.count("\n\t")
    if len(fields) != starts:  # some line is not a field, a continuation: find it
        bad = _NOT_A_FIELD.search(text)
        if bad is not None:
            line = text[bad.start():].split("\n", 1)[0]
            raise ArchiveError(f"deb822: not a field: {line[:60]!r}")
    if len({key.lower() for key, _ in fields}) != len(fields):
        seen: set[str] = set()
        for key, _ in fields:
            if key.lower() in seen:
                raise ArchiveError(f"deb822: field {key} appears twice in a paragraph")
            seen.add(key.lower())
    return fields


def lookup(paragraph: Paragraph, key: str) -> str:
    folded = key.lower()
    for k, v in paragraph:
        if k.lower() == folded:
            return v
    return ""


def package_record(paragraph: Paragraph, where: str = "Packages") -> PackageRecord:
    """A PackageRecord from a Packages paragraph; ArchiveError if a needed field is bad."""
    return _record(dict(paragraph), paragraph, where)


def parse_packages(source: str | TextIO, *, arch: str,
                   where: str = "Packages") -> Iterator[PackageRecord]:
    """Records of a Packages index for ``arch`` and ``all`` (others are skipped)."""
    wanted = (arch, "all")
    for paragraph in iter_paragraphs(source):
        fields = dict(paragraph)
        architecture = fields.get("Architecture")
        if architecture is None:
            architecture = lookup(paragraph, "Architecture")
        if architecture in wanted:
            yield _record(fields, paragraph, where)


_REQUIRED = ("Package", "Version", "Architecture", "Filename", "SHA256", "Size")


def _record(fields: dict[str, str], paragraph: Paragraph, where: str) -> PackageRecord:
    try:  # archive indexes spell field names canonically: the fast path
        name, version, architecture, filename, sha256, size = (
            fields["Package"], fields["Version"], fields["Architecture"], fields["Filename"],
            fields["SHA256"], fields["Size"])
    except KeyError:
        name, version, architecture, filename, sha256, size = (
            lookup(paragraph, key) for key in _REQUIRED)
    if not (name and version and architecture and filename and sha256 and size):
        missing = [key for key in _REQUIRED if not lookup(paragraph, key)]
        raise ArchiveError(f"{where}: package {name or '?'} lacks " + ", ".join(missing))
    sha256 = sha256.lower()
    if not _HEX64.fullmatch(sha256):
        raise ArchiveError(f"{where}: package {name}: SHA256 is not a sha256: {sha256!r}")
    if not size.isdigit():
        raise ArchiveError(f"{where}: package {name}: Size is not a number: {size!r}")
    return PackageRecord(name=name, version=version, architecture=architecture,
                         filename=filename, sha256=sha256, size=int(size), fields=paragraph)


def parse_release(text: str, where: str = "Release") -> Release:
    """A Release value from the (already verified) text of a Release file."""
    paragraphs = list(iter_paragraphs(text))
    if len(paragraphs) != 1:
        raise ArchiveError(f"{where}: expected one paragraph, found {len(paragraphs)}")
    para = paragraphs[0]
    date = lookup(para, "Date")
    if not date:
        raise ArchiveError(f"{where}: no Date field")
    valid_until = lookup(para, "Valid-Until")
    sums: dict[str, tuple[str, int]] = {}
    for line in lookup(para, "SHA256").splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not _HEX64.fullmatch(parts[0].lower()) or not parts[1].isdigit():
            raise ArchiveError(f"{where}: bad SHA256 line {line.strip()!r}")
        sums[parts[2]] = (parts[0].lower(), int(parts[1]))
    if not sums:
        raise ArchiveError(f"{where}: no SHA256 checksums")
    return Release(suite=lookup(para, "Suite"), codename=lookup(para, "Codename"), date=date,
                   date_epoch=_epoch(date, where),
                   sha256=MappingProxyType(sums),
                   valid_until_epoch=_epoch(valid_until, where) if valid_until else None,
                   acquire_by_hash=lookup(para, "Acquire-By-Hash").lower() == "yes",
                   architectures=tuple(lookup(para, "Architectures").split()),
                   components=tuple(lookup(para, "Components").split()))


def _epoch(date: str, where: str) -> int:
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError) as exc:
        raise ArchiveError(f"{where}: bad date {date!r}") from exc
    if parsed.tzinfo is None:
        raise ArchiveError(f"{where}: date without a time zone {date!r}")
    return int(parsed.timestamp())
