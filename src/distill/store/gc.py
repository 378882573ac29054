"""Pruning the store: remove what no tagged image needs (``distill prune``).

What a tagged image needs is what ``index.json`` reaches: its manifests (through image
indexes), configs and layer blobs, with their layer facts. Everything else can be made
again, so it goes:

* ``snapshots/``: unpacked layers, extracted again from their blobs when a build needs them;
* blobs no tagged image reaches (layers of intermediate stages and of old builds), their
  layer facts, and the build-cache entries that point at them;
* leftovers of killed processes under ``tmp/`` (as every store user already does).

``all_cache=True`` (``--all``) also empties the build cache, the ``RUN --mount=type=cache``
directories and the downloaded Debian packages and indexes. Pruning takes the store's usage
lock exclusively (every other store user holds it shared), so it never runs alongside a
build: it waits for none, and fails with a clear error instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.oci import mediatypes as mt
from distill.oci.digest import Digest
from distill.store.blobs import remove_tree
from distill.store.store import Store

# Build-cache directories that ``--all`` empties, under the store root.
CACHE_DIRS = ("cache-mounts", "debs", "indexes", "contenthash", "url-validators")


def _is_hex(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


@dataclass
class PruneReport:
    removed: dict[str, int] = field(default_factory=dict)    # what -> count
    reclaimed: int = 0                                        # bytes

    def add(self, what: str, path: Path) -> None:
        self.reclaimed += _disk_usage(path)
        self.removed[what] = self.removed.get(what, 0) + 1


def _disk_usage(path: Path) -> int:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_blocks * 512
    total = st.st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def reachable_blobs(store: Store) -> set[str]:
    """Hex digests of every blob a tagged image reaches (manifests, configs, layers)."""
    seen: set[str] = set()
    pending = [desc.digest for _, desc in store.names.entries()]
    while pending:
        digest = pending.pop()
        if digest.hex in seen:
            continue
        seen.add(digest.hex)
        path = store.blobs.path(digest)
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue            # a layer or other non-JSON blob: nothing below it
        if not isinstance(doc, dict):
            continue
        media = doc.get("mediaType", "")
        children: list[object] = []
        if media in mt.INDEXES or "manifests" in doc:
            children = doc.get("manifests") or []
        elif "config" in doc and "layers" in doc:
            children = [doc["config"], *(doc.get("layers") or [])]
        for child in children:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                pending.append(Digest(child["digest"]))
    return seen


def _remove_whole(store: Store, directory: Path) -> None:
    """Remove a snapshot or a cache directory: first out of its place in one rename, then
    its files. A prune killed halfway leaves no half-removed snapshot that a build would
    take for whole (a snapshot's name says it holds the whole layer), only a directory in
    its own temporary space, which the next store user removes."""
    doomed = store.blobs.tmp_dir / f"removed-{directory.name}"
    os.rename(directory, doomed)
    remove_tree(doomed)


def prune(store: Store, *, all_cache: bool = False) -> PruneReport:
    """Remove what no tagged image needs; see the module docstring."""
    store.lock_exclusive()
    report = PruneReport()
    for entry in sorted(store.snapshot_dir.iterdir()):
        report.add("snapshots", entry)
        _remove_whole(store, entry)
    keep = reachable_blobs(store)
    for entry in sorted(store.blobs.blob_dir.iterdir()):
        if entry.name not in keep:
            report.add("blobs", entry)
            entry.unlink()
            for notes in (store.facts_dir / entry.name, store.sources_dir / entry.name):
                notes.unlink(missing_ok=True)
    memo = store.root / "memo"          # records of builds (builder/memo.py)
    for entry in sorted(memo.iterdir()) if memo.is_dir() else []:
        try:
            record = json.loads(entry.read_bytes())
            whole = all(b.split(":")[-1] in keep for b in record["blobs"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            whole = False
        if all_cache or not whole:
            entry.unlink()
    for entry in sorted(store.made_dir.iterdir()):   # blobs made from lazy layers
        hexdigest, _, tag = entry.name.partition(".")
        made = store.made_blob(Digest.from_hex(hexdigest), tag or "gzip") \
            if _is_hex(hexdigest) else None
        if made is None or made.digest.hex not in keep:
            entry.unlink()
    for entry in sorted(store.cache_dir.iterdir()):
        value = store.cache_get(entry.name)
        blob = (value or {}).get("blob")
        digest = blob.get("digest") if isinstance(blob, dict) else None
        stale = isinstance(digest, str) and digest.split(":")[-1] not in keep
        # a lazy layer lived in its snapshot, and every snapshot is gone
        stale = stale or (value or {}).get("snapshot") is True
        if all_cache or value is None or stale:
            report.add("cache entries", entry)
            entry.unlink()
    if all_cache:
        for name in CACHE_DIRS:
            directory = store.root / name
            if directory.is_dir():
                for entry in sorted(directory.iterdir()):
                    if entry.is_dir() and not entry.is_symlink():
                        report.add(name, entry)
                        _remove_whole(store, entry)
                    else:                       # lock files and downloaded files
                        if not entry.name.endswith(".lock"):
                            report.add(name, entry)
                        entry.unlink()
    return report
