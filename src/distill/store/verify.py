"""Checking the store (``distill store verify``) and repairing it (``--repair``).

Every write into the store is a temp file renamed into place once whole, so a killed
process can leave only what this module calls *leftovers*: temp files and directories no
reader ever opens. What it looks for:

* **corrupt**: a blob whose content does not hash to its name; a layer fact (the diff_id
  distill computed for a blob) that the blob no longer unpacks to; a record (index.json,
  a cache entry, a layer fact, a build record) that does not parse;
* **missing**: a blob that a tagged image reaches but the store does not hold;
* **dangling**: a record about a blob the store no longer holds (a cache entry, a layer
  fact, the note of a blob made from a layer): harmless, since builds check before they
  trust one, but dead weight;
* **leftover**: temp files of killed processes (``.NAME.*`` beside a record, ``.new-*``
  cache mounts, ``.partial-*`` downloads), never read under a real name.

Snapshots (unpacked layers) are a cache of the blobs: verify checks that each is a
directory named by a digest, not the files in it (only the store's owner can change
them); ``distill prune`` removes every snapshot, and builds unpack them again from
blobs that are checked as they unpack.

The store is consistent when nothing is corrupt or missing. ``repair`` removes what is
corrupt, dangling or left over, and drops the names of images whose content is missing
(they could never be used again; rebuilding one makes it whole) and the entries of
``index.json`` that are no descriptor; an ``index.json`` that does not parse at all is
kept beside as ``index.json.broken-TIME`` and the store starts with no names. Both take the store's usage lock
exclusively, as pruning does: they never run beside a build.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from distill.errors import DistillError
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.store.blobs import remove_tree
from distill.store.names import atomic_write, read_record
from distill.store.store import Store

KINDS = ("corrupt", "missing", "dangling", "leftover")
#: What makes the store inconsistent (the others are only reported and repaired).
FATAL = frozenset({"corrupt", "missing"})

#: Directories of records whose names are blob digests (hex), and what each holds.
_RECORD_DIRS = {"layers": "layer fact", "made-blobs": "made-blob note",
                "sources": "blob sources note"}
#: Directories where killed processes can leave temp files (beside what they write).
_TEMP_PARENTS = (".", "cache", "layers", "made-blobs", "sources", "memo", "contenthash",
                 "cache-mounts", "debs", "indexes", "url-validators")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Finding:
    kind: str          # one of KINDS
    path: Path
    what: str          # what is wrong, for a person
    repair: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)    # what -> how many
    repaired: list[Finding] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Nothing corrupt or missing is left (after repairs, when asked for)."""
        fixed = {id(f) for f in self.repaired}
        return not any(f.kind in FATAL and id(f) not in fixed for f in self.findings)

    def count(self, what: str) -> None:
        self.checked[what] = self.checked.get(what, 0) + 1


def _hash_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _decompressed_digest(path: Path, kind: str) -> str | None:
    """sha256 of the blob read as ``kind`` ("gzip", "zstd" or "tar"), or None when it is
    not that (a decompressor's error of any kind, on bytes an image chose)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            stream: BinaryIO
            if kind == "gzip":
                from isal import igzip

                stream = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            elif kind == "zstd":
                import zstandard

                stream = zstandard.ZstdDecompressor().stream_reader(raw)
            else:
                stream = raw
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except Exception:  # noqa: BLE001 (isal, zstandard and zlib each raise their own)
        return None
    return digest.hexdigest()


def _unpacks_to(path: Path, diff_id: str) -> str | None:
    """None when the blob's tar hashes to ``diff_id`` read as what its first bytes say
    or, failing that, as a plain tar (a tar may begin with those bytes); else what it
    hashes to."""
    with open(path, "rb") as raw:
        magic = raw.read(4)
    kinds = ["gzip"] if magic.startswith(_GZIP_MAGIC) else \
        ["zstd"] if magic == _ZSTD_MAGIC else []
    actual = None
    for kind in [*kinds, "tar"]:
        actual = _decompressed_digest(path, kind)
        if actual is not None and f"sha256:{actual}" == diff_id:
            return None
    return actual or "(no tar)"


def _is_hex(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _remove(path: Path) -> Callable[[], None]:
    return lambda: remove_tree(path)      # a link or a file itself; a directory whole


def _load_json(path: Path) -> object:
    """A record's JSON (see ``read_record``: a regular file of bounded size)."""
    return json.loads(read_record(path))


class _Checker:
    def __init__(self, store: Store, report: VerifyReport) -> None:
        self.store = store
        self.report = report
        self.blobs: set[str] = set()       # hex digests of whole blobs

    def find(self, kind: str, path: Path, what: str,
             repair: Callable[[], None] | None = None) -> None:
        self.report.findings.append(Finding(kind, path, what, repair))

    # -- blobs ------------------------------------------------------------
    def check_blobs(self) -> None:
        for entry in sorted(self.store.blobs.blob_dir.iterdir()):
            self.report.count("blobs")
            if not _is_hex(entry.name) or entry.is_symlink() or not entry.is_file():
                self.find("corrupt", entry, "not a blob (a blob is a file named by its "
                          "sha256)", _remove(entry))
            elif _hash_file(entry) != entry.name:
                self.find("corrupt", entry, "the content does not hash to its name",
                          _remove(entry))
            else:
                self.blobs.add(entry.name)

    # -- tagged images ---------------------------------------------------------
    def check_names(self) -> None:
        index = self.store.root / "index.json"
        try:
            doc = _load_json(index)
        except (OSError, ValueError) as e:
            doc = e
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            self.find("corrupt", index, "the store's names (an OCI index) do not parse",
                      self._set_aside(index))
            return
        for entry in entries:
            self.report.count("images")
            try:
                desc = Descriptor.from_dict(entry)
            except DistillError:
                self.find("corrupt", index, f"an entry of index.json is not a descriptor: "
                          f"{json.dumps(entry)[:200]}", self._drop(entry))
                continue
            name = desc.annotations.get(mt.ANNOTATION_REF_NAME, "")
            gone = [d for d in self._reached(desc.digest) if d not in self.blobs]
            if gone:
                self.find("missing", index,
                          f"image {name or desc.digest} reaches {len(gone)} blob(s) the "
                          f"store does not hold (sha256:{gone[0]} ...)", self._drop(entry))

    def _drop(self, entry: object) -> Callable[[], None]:
        """Rewrite index.json without ``entry`` (the others kept as they are)."""
        def repair() -> None:
            index = self.store.root / "index.json"
            doc = _load_json(index)
            assert isinstance(doc, dict)
            doc["manifests"] = [e for e in doc["manifests"] if e != entry]
            atomic_write(index, json.dumps(doc, indent=2).encode(), self.store.blobs.tmp_dir)
        return repair

    def _reached(self, top: Digest) -> Iterator[str]:
        pending, seen = [top.hex], set()
        while pending:
            hexdigest = pending.pop()
            if hexdigest in seen:
                continue
            seen.add(hexdigest)
            yield hexdigest
            if hexdigest not in self.blobs:
                continue
            try:
                doc = _load_json(self.store.blobs.blob_dir / hexdigest)
            except (OSError, ValueError):
                continue                    # a layer: nothing below it
            if not isinstance(doc, dict):
                continue
            children = doc.get("manifests") if "manifests" in doc else \
                [doc.get("config"), *(doc.get("layers") or [])] if "layers" in doc else []
            for child in children or []:
                if isinstance(child, dict) and isinstance(child.get("digest"), str):
                    try:
                        pending.append(Digest(child["digest"]).hex)
                    except DistillError:
                        continue

    def _set_aside(self, path: Path) -> Callable[[], None]:
        """Keep the damaged file beside (never over an earlier one) and start empty."""
        def repair() -> None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            kept = path.with_name(f"{path.name}.broken-{stamp}")
            n = 0
            while kept.exists():
                n += 1
                kept = path.with_name(f"{path.name}.broken-{stamp}-{n}")
            os.replace(path, kept)
            empty = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
            atomic_write(path, json.dumps(empty, indent=2).encode(), self.store.blobs.tmp_dir)
        return repair

    # -- records about blobs -------------------------------------------------
    def check_records(self) -> None:
        for directory, what in _RECORD_DIRS.items():
            base = self.store.root / directory
            for entry in sorted(base.iterdir()) if base.is_dir() else []:
                if entry.name.startswith("."):
                    continue                # temp files: check_leftovers
                self.report.count(f"{what}s")
                hexdigest = entry.name.partition(".")[0]
                try:
                    value = _load_json(entry)
                except (OSError, ValueError):
                    self.find("corrupt", entry, f"a {what} that does not parse",
                              _remove(entry))
                    continue
                if not _is_hex(hexdigest):
                    self.find("leftover", entry, f"not a {what} (its name is no digest)",
                              _remove(entry))
                elif directory == "layers":
                    self._check_fact(entry, hexdigest, value)
                elif directory == "made-blobs":
                    blob = value.get("digest") if isinstance(value, dict) else None
                    if not isinstance(blob, str) or blob.split(":")[-1] not in self.blobs:
                        self.find("dangling", entry, f"a {what} for a blob the store "
                                  "does not hold", _remove(entry))
                elif hexdigest not in self.blobs:
                    self.find("dangling", entry, f"a {what} for a blob the store does "
                              "not hold", _remove(entry))

    def _check_fact(self, entry: Path, hexdigest: str, value: object) -> None:
        if hexdigest not in self.blobs:
            self.find("dangling", entry, "a layer fact for a blob the store does not hold",
                      _remove(entry))
            return
        diff_id = value.get("diff_id") if isinstance(value, dict) else None
        if not isinstance(diff_id, str):
            self.find("corrupt", entry, "a layer fact with no diff_id", _remove(entry))
            return
        actual = _unpacks_to(self.store.blobs.blob_dir / hexdigest, diff_id)
        if actual is not None:
            self.find("corrupt", entry, f"the blob unpacks to sha256:{actual}, not the "
                      f"recorded {diff_id}", _remove(entry))

    def check_cache(self) -> None:
        for entry in sorted(self.store.cache_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            self.report.count("cache entries")
            try:
                value = _load_json(entry)
            except (OSError, ValueError):
                value = None
            if not isinstance(value, dict):
                self.find("corrupt", entry, "a build-cache entry that does not parse",
                          _remove(entry))
                continue
            blob = value.get("blob")
            digest = blob.get("digest") if isinstance(blob, dict) else None
            if isinstance(digest, str) and digest.split(":")[-1] not in self.blobs:
                self.find("dangling", entry, "a build-cache entry for a blob the store "
                          "does not hold", _remove(entry))

    def check_memo(self) -> None:
        for directory in ("memo", "contenthash"):
            base = self.store.root / directory
            for entry in sorted(base.iterdir()) if base.is_dir() else []:
                if entry.name.startswith("."):
                    continue
                self.report.count("build records")
                try:
                    _load_json(entry)
                except (OSError, ValueError):
                    self.find("corrupt", entry, "a build record that does not parse",
                              _remove(entry))

    def check_snapshots(self) -> None:
        for entry in sorted(self.store.snapshot_dir.iterdir()):
            self.report.count("snapshots")
            if not _is_hex(entry.name) or entry.is_symlink() or not entry.is_dir():
                self.find("leftover", entry, "not an unpacked layer", _remove(entry))

    def check_leftovers(self) -> None:
        for directory in _TEMP_PARENTS:
            base = self.store.root / directory
            for entry in sorted(base.iterdir()) if base.is_dir() else []:
                if entry.name.startswith(".") and not entry.name.endswith(".lock"):
                    self.find("leftover", entry, "a temp file of a killed process",
                              _remove(entry))


def verify(store: Store, *, repair: bool = False) -> VerifyReport:
    """Check the whole store; with ``repair``, also fix what was found (see the module
    docstring). Fails with StoreError while another distill process uses the store."""
    store.lock_exclusive("store verify")
    report = VerifyReport()
    checker = _Checker(store, report)
    checker.check_leftovers()
    checker.check_blobs()
    checker.check_names()
    checker.check_records()
    checker.check_cache()
    checker.check_memo()
    checker.check_snapshots()
    if repair:
        for finding in report.findings:
            if finding.repair is not None:
                finding.repair()
                report.repaired.append(finding)
    return report
