"""What one layer holds: its tar read once, as a list of entries and deletions.

A layer is read as a stream through the archive limits (``distill.limits``), never
unpacked: analysing a hostile image writes nothing to disk. Readers that need a file's
bytes (the SBOM's package databases, Go binaries' build info) are *collectors*: each says
how many bytes of an entry it wants and is given them as the stream passes."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from distill.errors import ImageError
from distill.formats.layers import open_layer_stream
from distill.limits import open_tar
from distill.oci.digest import Digest

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

#: what one collector may hold of one file: more is not read (a package database or a
#: Go binary is far smaller)
MAX_COLLECTED = 512 << 20


@dataclass(frozen=True)
class Entry:
    """One tar member: ``path`` relative, without ``./`` or a trailing slash."""

    path: str
    kind: str            # file, dir, symlink, hardlink, char, block, fifo
    size: int            # the member's bytes (0 but for regular files)
    mode: int            # permission bits with setuid/setgid/sticky
    uid: int = 0
    gid: int = 0
    link: str = ""       # a symlink's target, a hard link's source path

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


class Collector(Protocol):
    """Reads what it needs of some files as a layer passes. A collector may also have
    ``more(entry, head) -> int``: given the head it asked for, how many bytes it needs
    in all (0: none; a Go binary is read whole only once its head says ELF)."""

    name: str

    def wants(self, entry: Entry) -> int:
        """How many leading bytes of ``entry`` to be given (0: none)."""
        ...

    def parse(self, entry: Entry, data: bytes) -> object | None:
        """What ``data`` (the leading bytes asked for) says; None: nothing."""
        ...


class Budget:
    """The bytes each collector may still be given in one analysis: each file's share is
    capped, and so is their sum, per collector (an image of many large package databases
    or binaries is read for its tree, not held in memory; one collector spending its
    share leaves the others theirs)."""

    def __init__(self, total: int = 1 << 30) -> None:
        self.total = total
        self.spent: dict[str, int] = {}

    def take(self, collector: str, n: int) -> bool:
        spent = self.spent.get(collector, 0)
        if spent + n > self.total:
            return False
        self.spent[collector] = spent + n
        return True


@dataclass
class LayerFiles:
    entries: list[Entry] = field(default_factory=list)
    #: paths a whiteout deletes from the layers below
    deleted: list[str] = field(default_factory=list)
    #: directories whose contents in the layers below are hidden (opaque)
    opaque: list[str] = field(default_factory=list)
    #: (collector name, path) -> what the collector made of the file
    found: dict[tuple[str, str], object] = field(default_factory=dict)


_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
          tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
          tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def clean(name: str) -> str:
    """A member name as a path relative to the image's root ("" for the root)."""
    wrapped = f"/{name}/"
    if "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped:
        return name           # already clean: the common case, in C
    parts = [p for p in name.split("/") if p not in ("", ".")]
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/".join(out)


def entry_of(member: tarfile.TarInfo) -> Entry | None:
    kind = _KINDS.get(member.type)
    if kind is None:
        return None
    link = clean(member.linkname) if kind == "hardlink" else member.linkname
    return Entry(clean(member.name), kind, member.size if kind == "file" else 0,
                 member.mode & 0o7777, member.uid, member.gid, link)


def read_layer(stream: BinaryIO, media_type: str, what: str,
               collectors: Sequence[Collector] = (), budget: Budget | None = None
               ) -> tuple[LayerFiles, Digest, int]:
    """The entries of the layer blob ``stream`` (compressed as ``media_type``), the
    diff_id its bytes hash to and their number."""
    files = LayerFiles()
    with open_layer_stream(stream, media_type, what) as raw:
        try:
            with open_tar(raw, what) as tar:  # type: ignore[arg-type]
                budget = budget or Budget()
                for member in tar:
                    _add(files, tar, member, collectors, budget)
        except tarfile.TarError as e:
            raise ImageError(f"{what} is not a valid tar archive: {e}") from None
        raw.drain()
    return files, Digest.from_hex(raw.hexdigest()), raw.count


def _add(files: LayerFiles, tar: tarfile.TarFile, member: tarfile.TarInfo,
         collectors: Sequence[Collector], budget: Budget) -> None:
    entry = entry_of(member)
    if entry is None or not entry.path:
        return
    parent, _, name = entry.path.rpartition("/")
    if name == OPAQUE:
        files.opaque.append(parent)
        return
    if name.startswith(WHITEOUT):
        files.deleted.append(f"{parent}/{name[len(WHITEOUT):]}".lstrip("/"))
        return
    files.entries.append(entry)
    if entry.kind != "file" or not collectors:
        return
    wanted = {c: min(c.wants(entry), entry.size, MAX_COLLECTED) for c in collectors}
    if max(wanted.values()) <= 0:
        return
    source = tar.extractfile(member)
    if source is None:
        return
    data = b""
    for collector in collectors:    # a collector that judges by the head what else it needs
        if wanted[collector] <= 0:
            continue
        if len(data) < wanted[collector]:
            data += source.read(wanted[collector] - len(data))
        more = getattr(collector, "more", None)
        if more is not None:
            n = min(int(more(entry, data[:wanted[collector]])), entry.size, MAX_COLLECTED)
            wanted[collector] = max(wanted[collector], n) if n else 0
    for collector, n in wanted.items():     # each within its share of the analysis
        if n > 0 and not budget.take(collector.name, n):
            wanted[collector] = 0
    most = max(wanted.values())
    if most > len(data):
        data += source.read(most - len(data))
    for collector, n in wanted.items():
        if n > 0:
            value = collector.parse(entry, data[:n])
            if value is not None:
                files.found[(collector.name, entry.path)] = value
