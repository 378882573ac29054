"""A lock: the exact packages a resolution chose, and the signed Release they came from.

The JSON is meant to be committed and reviewed: two-space indented, packages sorted by
name, each package's Packages paragraph kept in its original field order, UTF-8 as is.
Reading is strict: unknown or missing keys, wrong types, bad hashes, or a paragraph that
disagrees with its package's summary all raise ArchiveError.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from distill.debian.archive import ARCH, SUITE
from distill.debian.control import PackageRecord
from distill.errors import ArchiveError

#: 1: every package from ``mirror``; 2: also ``mirrors``, the packages fetched from
#: another mirror (debian-security's updates). A lock needing no other mirror is written
#: as version 1, so existing locks and their readers stay as they were.
LOCK_VERSION = 2
_TOP = ("lock_version", "mirror", "suite", "arch", "release_date", "date_epoch", "packages")
_TOP_V2 = (*_TOP, "mirrors")
_PACKAGE = ("name", "version", "architecture", "filename", "sha256", "size", "fields")
_SUMMARY = {"name": "Package", "version": "Version", "architecture": "Architecture",
            "filename": "Filename", "sha256": "SHA256", "size": "Size"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Lock:
    mirror: str
    suite: str
    arch: str
    release_date: str
    date_epoch: int
    packages: tuple[PackageRecord, ...]
    #: (package name, mirror) for the packages not fetched from ``mirror``
    mirrors: tuple[tuple[str, str], ...] = ()

    def mirror_for(self, name: str) -> str:
        """Where the package ``name`` is fetched from."""
        return dict(self.mirrors).get(name, self.mirror)

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "lock_version": 2 if self.mirrors else 1,
            "mirror": self.mirror,
            "suite": self.suite,
            "arch": self.arch,
            "release_date": self.release_date,
            "date_epoch": self.date_epoch,
            "packages": [
                {"name": p.name, "version": p.version, "architecture": p.architecture,
                 "filename": p.filename, "sha256": p.sha256, "size": p.size,
                 "fields": dict(p.fields)}
                for p in sorted(self.packages, key=_order)
            ],
        }
        if self.mirrors:
            doc["mirrors"] = dict(sorted(self.mirrors))
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Lock:
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            raise ArchiveError(f"lock file is not valid JSON: {exc}") from exc
        version = doc.get("lock_version") if isinstance(doc, dict) else None
        _exact_keys(doc, _TOP_V2 if version == 2 else _TOP, "lock file")
        if version not in (1, 2) or isinstance(version, bool):
            raise ArchiveError(f"lock file: unsupported lock_version {version!r}")
        for key in ("mirror", "suite", "arch", "release_date"):
            _string(doc[key], f"lock file: {key}")
        epoch = _integer(doc["date_epoch"], "lock file: date_epoch")
        if not isinstance(doc["packages"], list):
            raise ArchiveError("lock file: packages is not a list")
        if not SUITE.fullmatch(doc["suite"]):
            raise ArchiveError(f"lock file: suite {doc['suite']!r} is not a Debian suite name")
        if not ARCH.fullmatch(doc["arch"]):
            raise ArchiveError(f"lock file: arch {doc['arch']!r} is not a Debian architecture")
        packages = tuple(_package(entry, i) for i, entry in enumerate(doc["packages"]))
        other = [p.name for p in packages if p.architecture not in (doc["arch"], "all")]
        if other:
            raise ArchiveError(f"lock file: packages not for {doc['arch']}: {', '.join(other)}")
        names = [p.name for p in packages]
        if len(set(names)) != len(names):
            raise ArchiveError("lock file: a package is listed twice")
        mirrors = doc.get("mirrors", {})
        if not isinstance(mirrors, dict):
            raise ArchiveError("lock file: mirrors is not an object")
        for name, url in mirrors.items():
            if name not in names:
                raise ArchiveError(f"lock file: mirrors names {name!r}, which it does not list")
            if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s]+", url):
                raise ArchiveError(f"lock file: mirror {url!r} of {name} is not an http(s) URL")
        return cls(mirror=doc["mirror"], suite=doc["suite"], arch=doc["arch"],
                   release_date=doc["release_date"], date_epoch=epoch, packages=packages,
                   mirrors=tuple(sorted(mirrors.items())))


def _order(rec: PackageRecord) -> tuple[str, str, str]:
    return (rec.name, rec.architecture, rec.version)


def _package(entry: Any, i: int) -> PackageRecord:
    where = f"lock file: packages[{i}]"
    _exact_keys(entry, _PACKAGE, where)
    for key in ("name", "version", "architecture", "filename", "sha256"):
        _string(entry[key], f"{where}.{key}")
    where = f"lock file: package {entry['name']}"
    if not _HEX64.fullmatch(entry["sha256"]):
        raise ArchiveError(f"{where}: sha256 is not 64 lowercase hex digits")
    size = _integer(entry["size"], f"{where}: size")
    fields = entry["fields"]
    if not isinstance(fields, dict):
        raise ArchiveError(f"{where}: fields is not an object")
    for key, value in fields.items():
        if not key or any(c.isspace() or c == ":" for c in key):
            raise ArchiveError(f"{where}: bad field name {key!r}")
        _string(value, f"{where}: field {key}")
    for attr, key in _SUMMARY.items():
        if key in fields and fields[key].strip().lower() != str(entry[attr]).lower():
            raise ArchiveError(f"{where}: field {key} ({fields[key]!r}) disagrees with "
                               f"{attr} ({entry[attr]!r})")
    return PackageRecord(name=entry["name"], version=entry["version"],
                         architecture=entry["architecture"], filename=entry["filename"],
                         sha256=entry["sha256"], size=size, fields=tuple(fields.items()))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ArchiveError(f"lock file: duplicate key {key!r}")
        out[key] = value
    return out


def _exact_keys(value: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(value, dict):
        raise ArchiveError(f"{where}: not an object")
    missing = [k for k in keys if k not in value]
    extra = sorted(set(value) - set(keys))
    if missing or extra:
        raise ArchiveError(f"{where}: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"unknown {', '.join(extra)}" if extra else "") if part))


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ArchiveError(f"{where}: not a non-empty string")
    return value


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArchiveError(f"{where}: not a non-negative integer")
    return value
