"""Pruning the store: remove what no tagged image needs (``distill prune``).

What a tagged image needs is what ``index.json`` reaches: its manifests (through image
indexes), configs and layer blobs, with their layer facts. Everything else can be made
again, so it goes:

* ``snapshots/``: unpacked layers, extracted again from their blobs when a build needs them;
* blobs no tagged image reaches (layers of intermediate stages and of old builds), their
  layer facts, and the build-cache entries that point at them;
* leftovers of killed processes under ``tmp/`` (as every store user already does).

``all_cache=True`` (``--all``) also empties the build cache, the ``RUN --mount=type=cache``
directories and the downloaded Debian packages and indexes.

Builds, ``distill base`` and pulls may run while a prune does: each pins what it uses
(``store/pins.py``) and the prune keeps that. ``--all``, which removes cache mounts a RUN
may have mounted, takes the store's usage lock exclusively instead (every other store
user holds it shared): it runs only when no other distill process uses the store, and
fails with a clear error otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.confine import walk
from distill.oci import mediatypes as mt
from distill.oci.digest import Digest
from distill.store.blobs import remove_tree
from distill.store.names import read_record
from distill.store.store import Store

#: The largest image document (a manifest, an index, a config) a blob can be; a larger
#: blob is a layer, which prune never reads.
MAX_DOCUMENT = 8 << 20

# Build-cache directories that ``--all`` empties, under the store root.
CACHE_DIRS = ("cache-mounts", "debs", "indexes", "contenthash", "url-validators")


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
    for dirpath, dirnames, filenames in walk(path):
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
        path = store.blobs.blob_dir / digest.hex        # read, not pinned: see prune
        try:
            if path.stat().st_size > MAX_DOCUMENT:
                continue        # a layer: never read whole
            doc = json.loads(read_record(path))
        except (OSError, ValueError):
            continue            # gone, or a layer or other non-JSON blob: nothing below
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


def _blob_of(record: Path) -> str | None:
    """The hex digest a made-blob note or a cache entry names, if any."""
    try:
        value = json.loads(read_record(record))
    except (OSError, ValueError):
        return None
    blob = value.get("blob", value) if isinstance(value, dict) else None
    digest = blob.get("digest") if isinstance(blob, dict) else None
    return digest.split(":")[-1] if isinstance(digest, str) else None


def prune(store: Store, *, all_cache: bool = False) -> PruneReport:
    """Remove what no tagged image needs; see the module docstring.

    Builds may run meanwhile: what a living process has pinned (``store/pins.py``: the
    blobs it read or wrote, the snapshots it mounts) is kept, and no process can pin
    anything new until this is done. ``all_cache`` also empties directories a RUN may be
    using (cache mounts), so it needs the store to itself."""
    if all_cache:
        store.lock_exclusive()
    report = PruneReport()
    with store.pins.held_exclusively() as pinned:
        _prune(store, report, pinned, all_cache)
    return report


def _prune(store: Store, report: PruneReport, pinned: set[str], all_cache: bool) -> None:
    for entry in sorted(store.snapshot_dir.iterdir()):
        if f"snapshot:{entry.name}" not in pinned:
            report.add("snapshots", entry)
            _remove_whole(store, entry)
    keep = reachable_blobs(store) | {p.partition(":")[2] for p in pinned
                                     if p.startswith("blob:")}
    for entry in sorted(store.blobs.blob_dir.iterdir()):
        if entry.name not in keep:
            report.add("blobs", entry)
            remove_tree(entry)
            for notes in (store.facts_dir / entry.name, store.sources_dir / entry.name):
                notes.unlink(missing_ok=True)
    memo = store.root / "memo"          # records of builds (builder/memo.py)
    for entry in sorted(memo.iterdir()) if memo.is_dir() else []:
        try:
            record = json.loads(read_record(entry))
            whole = all(b.split(":")[-1] in keep for b in record["blobs"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            whole = False
        if all_cache or not whole:
            remove_tree(entry)
    for entry in sorted(store.made_dir.iterdir()):   # blobs made from lazy layers
        if _blob_of(entry) not in keep:
            remove_tree(entry)
    for entry in sorted(store.cache_dir.iterdir()):
        value = store.cache_get(entry.name)
        blob = _blob_of(entry)
        stale = blob is not None and blob not in keep
        # a lazy layer lived in its snapshot: stale once its snapshot is gone
        stale = stale or ((value or {}).get("snapshot") is True and not _lazy_kept(
            store, value or {}))
        if all_cache or value is None or stale:
            report.add("cache entries", entry)
            remove_tree(entry)
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
                        remove_tree(entry)


def _lazy_kept(store: Store, value: dict[str, object]) -> bool:
    """Whether a lazy layer's snapshot survived (a living process had it pinned)."""
    diff_id = value.get("diff_id")
    return isinstance(diff_id, str) and (store.snapshot_dir / diff_id.split(":")[-1]).is_dir()
