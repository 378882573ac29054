"""The operating system an image says it is, from ``etc/os-release`` (or
``usr/lib/os-release``, where the first is often a symlink to).

The SBOM (``distill.report.sbom``) makes it the operating-system component and takes
its ``ID`` and ``VERSION_ID`` for the ``distro`` qualifier of Debian package URLs. The
file is a hostile image's: it is read as data (shell-style quoting undone by shlex, no
expansion), capped in size, and lines that do not parse are skipped.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from distill.report.layerfiles import Entry

#: where os-release(5) says to look, the first one found winning
PATHS = ("etc/os-release", "usr/lib/os-release")
MAX_SIZE = 64 << 10


@dataclass(frozen=True)
class OsRelease:
    id: str                     # "debian"
    version_id: str = ""        # "12"
    name: str = ""              # "Debian GNU/Linux"
    pretty_name: str = ""
    version_codename: str = ""

    @property
    def distro(self) -> str:
        """``debian-12``: the distro qualifier of a package URL."""
        return f"{self.id}-{self.version_id}" if self.version_id else self.id


class OsReleaseCollector:
    name = "os-release"

    def wants(self, entry: Entry) -> int:
        return entry.size if entry.path in PATHS and 0 < entry.size <= MAX_SIZE else 0

    def parse(self, entry: Entry, data: bytes) -> OsRelease | None:
        return parse_os_release(data.decode("utf-8", errors="replace"))


def parse_os_release(text: str) -> OsRelease | None:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, raw = line.strip().partition("=")
        if not eq or not key.isidentifier() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(raw, comments=False, posix=True)
        except ValueError:
            continue
        fields[key] = words[0] if len(words) == 1 else ""
    os_id = fields.get("ID", "")
    if not os_id:
        return None
    return OsRelease(os_id, fields.get("VERSION_ID", ""), fields.get("NAME", ""),
                     fields.get("PRETTY_NAME", ""), fields.get("VERSION_CODENAME", ""))
