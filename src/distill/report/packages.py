"""Installed packages, read from the package managers' own records in an image.

Each collector reads one kind of record as the layers pass (``distill.report.layerfiles``)
and the SBOM (``distill.report.sbom``) keeps what the final image still shows:

* ``dpkg``: ``var/lib/dpkg/status`` and distroless's one-file-per-package
  ``var/lib/dpkg/status.d/*``, deb822 paragraphs (python-debian); a paragraph with a
  ``Status`` counts only if it says installed.
* ``python``: ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO`` (or an ``.egg-info``
  file), RFC 822 headers: Name, Version, License-Expression or License.
* ``npm``: ``node_modules/<name>/package.json`` and ``node_modules/@scope/name/
  package.json`` (not other package.json files inside a package).
* ``npm-lock``: ``package-lock.json`` and ``node_modules/.package-lock.json``, lockfile
  versions 2 and 3 (their ``packages`` map); the SBOM counts an entry only if its
  directory is in the final image.

Every file is a hostile image's: sizes are capped, and a file that does not parse is
skipped (None), never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from debian.deb822 import Deb822

from distill.report.layerfiles import Entry

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
#: the largest package database read (a full Debian system's status is a few MiB)
MAX_DATABASE = 64 << 20
#: the largest npm lockfile read, and the packages kept of one (a record costs ~10 times
#: its bytes once parsed: an attacker's layer of lockfiles took gigabytes)
MAX_LOCKFILE = 16 << 20
MAX_LOCKED = 20_000
#: the largest single-package record read
MAX_RECORD = 1 << 20


@dataclass(frozen=True)
class Package:
    kind: str                # "deb", "pypi", "npm"
    name: str
    version: str
    license: str = ""
    #: the license is meant as an SPDX expression (PEP 639's License-Expression, npm's
    #: license), not free text
    license_is_spdx: bool = False
    arch: str = ""
    source: str = ""         # deb: the source package, when not the same name
    source_version: str = ""


@dataclass(frozen=True)
class Locked:
    """A package a lockfile lists, installed (if at all) in ``directory``."""

    directory: str           # relative to the image root, like an Entry's path
    package: Package


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _sized(entry: Entry, cap: int) -> int:
    return entry.size if 0 < entry.size <= cap else 0


class DpkgCollector:
    """dpkg's status database (all packages) and distroless's status.d files."""

    name = "dpkg"

    def wants(self, entry: Entry) -> int:
        if entry.path == DPKG_STATUS:
            return _sized(entry, MAX_DATABASE)
        rest = entry.path.removeprefix(DPKG_STATUS_D)
        if (rest != entry.path and rest and "/" not in rest
                and not rest.endswith(".md5sums")):
            return _sized(entry, MAX_RECORD)
        return 0

    def parse(self, entry: Entry, data: bytes) -> tuple[Package, ...] | None:
        found = tuple(p for p in map(_deb, _paragraphs(_text(data))) if p is not None)
        return found or None


def _paragraphs(text: str) -> list[dict[str, str]]:
    try:
        return [dict(p) for p in Deb822.iter_paragraphs(text.splitlines(keepends=True),
                                                         use_apt_pkg=False)]
    except (ValueError, KeyError, TypeError):
        return []


def _deb(fields: dict[str, str]) -> Package | None:
    name, version = fields.get("Package", "").strip(), fields.get("Version", "").strip()
    status = fields.get("Status")
    if not name or not version or "\n" in name + version:
        return None
    if status is not None and status.split()[-1:] != ["installed"]:
        return None
    source, _, rest = fields.get("Source", "").strip().partition(" ")
    source_version = rest.strip().removeprefix("(").removesuffix(")").strip()
    if source == name:
        source = ""
    return Package("deb", name, version, arch=fields.get("Architecture", "").strip(),
                   source=source, source_version=source_version or
                   (version if source else ""))


class PythonCollector:
    """Installed Python distributions' core metadata."""

    name = "python"

    def wants(self, entry: Entry) -> int:
        parent, _, name = entry.path.rpartition("/")
        if ((name == "METADATA" and parent.endswith(".dist-info"))
                or (name == "PKG-INFO" and parent.endswith(".egg-info"))
                or name.endswith(".egg-info")):
            return _sized(entry, MAX_RECORD)
        return 0

    def parse(self, entry: Entry, data: bytes) -> Package | None:
        try:
            headers = BytesHeaderParser(policy=compat32).parsebytes(data)
            name = str(headers.get("Name") or "").strip()
            version = str(headers.get("Version") or "").strip()
            expression = str(headers.get("License-Expression") or "").strip()
            license_ = expression or str(headers.get("License") or "").strip()
        except (ValueError, TypeError, LookupError):
            return None
        if not name or not version or "\n" in name + version:
            return None
        if "\n" in license_ or len(license_) > 200:   # a whole license text
            license_ = ""
        return Package("pypi", name, version, license_, bool(expression))


def _npm_package_dir(path: str) -> bool:
    """``path`` is ``.../node_modules/<name>/package.json`` (or ``@scope/name``)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] != "package.json":
        return False
    if parts[-3] == "node_modules":
        return not parts[-2].startswith((".", "@"))
    return (len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")
            and not parts[-2].startswith("."))


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _npm_license(doc: dict[str, Any]) -> str:
    value = doc.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, str):
        return value.strip()
    licenses = doc.get("licenses")       # the old form: a list of {type, url}
    if isinstance(licenses, list):
        types = [x.get("type") for x in licenses if isinstance(x, dict)]
        names = [t.strip() for t in types if isinstance(t, str) and t.strip()]
        return " OR ".join(f"({n})" if " " in n else n for n in names)
    return ""


def _npm(doc: Any, name: object = None) -> Package | None:
    if not isinstance(doc, dict):
        return None
    name = doc.get("name", name)
    version = doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    return Package("npm", name, version, _npm_license(doc), license_is_spdx=True)


class NpmCollector:
    """package.json files of installed npm packages."""

    name = "npm"

    def wants(self, entry: Entry) -> int:
        return _sized(entry, MAX_RECORD) if _npm_package_dir(entry.path) else 0

    def parse(self, entry: Entry, data: bytes) -> Package | None:
        return _npm(_load_json(data))


class NpmLockCollector:
    """npm lockfiles (v2, v3): where each package is meant to be installed."""

    name = "npm-lock"

    def wants(self, entry: Entry) -> int:
        if entry.name in ("package-lock.json", ".package-lock.json"):
            return _sized(entry, MAX_LOCKFILE)
        return 0

    def parse(self, entry: Entry, data: bytes) -> tuple[Locked, ...] | None:
        doc = _load_json(data)
        if not isinstance(doc, dict) or doc.get("lockfileVersion") not in (2, 3):
            return None
        packages = doc.get("packages")
        if not isinstance(packages, dict):
            return None
        base = entry.path.rpartition("/")[0]
        if entry.name == ".package-lock.json":       # it lives in node_modules/
            base = base.rpartition("/")[0]
        found: list[Locked] = []
        for key, value in packages.items():
            if len(found) >= MAX_LOCKED:      # a lockfile's records cost memory: bounded
                break
            if not key or not isinstance(value, dict) or value.get("link") is True:
                continue                 # the project itself, or a symlinked workspace
            parts = key.split("/")
            if "node_modules" not in parts or ".." in parts or "." in parts:
                continue
            package = _npm(value, key.rpartition("node_modules/")[2])
            if package is not None:
                found.append(Locked(f"{base}/{key}".lstrip("/"), package))
        return tuple(found) or None
