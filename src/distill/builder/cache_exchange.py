"""The build cache shared across machines: ``--cache-to`` and ``--cache-from``, spelled
as buildx spells them (``type=registry,ref=REF[,mode=min|max]``, ``type=local,dest=DIR``
/ ``type=local,src=DIR``).

A cache is one OCI manifest: its config (``application/vnd.distill.cache.v1+json``) maps
step keys (what distill's local cache is keyed by: the parent's diff_ids and the step's
signature) to results (a layer, or "no change"), and its layers are the layer blobs those
results name, so a registry keeps them. ``type=local`` writes the same manifest into an
OCI layout directory.

A cache is hostile input like any image: the manifest and config are shape-checked, each
layer blob is verified against its digest when it is fetched (only when a key hits), and
its diff_id is computed from its bytes — an entry whose layer does not unpack to the
diff_id it claims is ignored. What cannot be checked without running the step is whether a
key's result is what the step would make: whoever can write to a cache can choose what a
cache hit puts into images built from it (as with BuildKit's caches), so ``--cache-from``
should name a cache only trusted builds write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from distill.confine import open_in_root
from distill.errors import DistillError, ImageError, UsageError
from distill.formats.layers import compute_diff_id
from distill.formats.layout_import import descriptor, load_json_doc
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.reference import normalize_reference
from distill.registry.pull import fetch_blob, fetch_manifest
from distill.registry.push import push_blobs_and_manifest
from distill.registry.registries import Registries
from distill.store.store import LayerFacts, Store

CACHE_CONFIG = "application/vnd.distill.cache.v1+json"
#: A cache config larger than this is refused.
MAX_CACHE_CONFIG = 32 << 20
CACHE_TAG = "cache"
_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")     # the ref name of the cache manifest in a local cache layout


@dataclass(frozen=True)
class CacheSpec:
    """One ``--cache-to`` or ``--cache-from``."""

    type: str                    # "registry" or "local"
    ref: str = ""                # type=registry: the normalised reference, with a tag
    path: Path | None = None     # type=local: dest= or src=
    mode: str = "min"            # --cache-to: min (the final stage's steps) or max (all)
    ignore_error: bool = False   # --cache-to ignore-error=true: a failed export only warns

    @classmethod
    def parse(cls, text: str, *, export: bool) -> CacheSpec:
        flag = "--cache-to" if export else "--cache-from"
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                if "," not in text and not export:
                    fields = {"type": "registry", "ref": text}   # --cache-from REF
                    break
                raise UsageError(f"{flag} {text!r}: expected key=value fields")
            fields[key.strip()] = value.strip()
        kind = fields.pop("type", "registry" if "ref" in fields else "")
        if not export and "mode" in fields:
            raise UsageError("--cache-from takes no mode=")
        mode = fields.pop("mode", "min")
        if mode not in ("min", "max"):
            raise UsageError(f"{flag} mode={mode!r}: expected min or max")
        ignore_error = fields.pop("ignore-error", "false").lower() in ("true", "1")
        for ignored in ("oci-mediatypes", "compression", "image-manifest"):
            fields.pop(ignored, None)      # buildx options that do not change what we do
        if kind == "registry":
            ref = fields.pop("ref", "")
            if not ref:
                raise UsageError(f"{flag} type=registry needs ref=REF")
            spec = cls("registry", ref=str(normalize_reference(ref).with_default_tag()),
                       mode=mode, ignore_error=ignore_error)
        elif kind == "local":
            key = "dest" if export else "src"
            where = fields.pop(key, "")
            if not where:
                raise UsageError(f"{flag} type=local needs {key}=DIR")
            spec = cls("local", path=Path(where), mode=mode, ignore_error=ignore_error)
        else:
            raise UsageError(f"{flag}: unsupported cache type {kind!r}",
                             hint="distill shares caches with type=registry,ref=REF and "
                                  "type=local,dest=DIR / src=DIR")
        if fields:
            raise UsageError(f"{flag}: unsupported options {', '.join(sorted(fields))}")
        return spec


# -- entries ----------------------------------------------------------------------------------

def _entry_layer(entry: dict[str, Any], what: str) -> Descriptor | None:
    """The layer blob an entry names (None for "no change"), shape-checked."""
    if entry.get("empty") is True:
        return None
    desc = descriptor(entry.get("blob"), f"{what}: blob")
    if not isinstance(entry.get("diff_id"), str) or not isinstance(entry.get("size"), int):
        raise ImageError(f"{what}: an entry needs diff_id and size")
    Digest(entry["diff_id"])
    return desc


def _checked_entries(doc: dict[str, Any], what: str) -> dict[str, dict[str, Any]]:
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise ImageError(f"{what}: no 'entries' object")
    out = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or len(key) != 64 or not all(
                c in "0123456789abcdef" for c in key):
            raise ImageError(f"{what}: entry {str(key)[:80]!r} is malformed")
        _entry_layer(entry, f"{what}: entry {key}")
        created = entry.get("created")
        if created is not None and not (isinstance(created, str)
                                        and _RFC3339_UTC.fullmatch(created)):
            raise ImageError(f"{what}: entry {key}: created must be a time such as "
                             "2024-01-02T03:04:05Z")
        out[key] = entry
    return out


# -- importing ---------------------------------------------------------------------------------

class ImportedCache:
    """One ``--cache-from``: its entries, and a way to fetch a layer blob on a hit."""

    def __init__(self, name: str, entries: dict[str, dict[str, Any]],
                 fetch: Callable[[Descriptor], None]) -> None:
        self.name = name
        self.entries = entries
        self._fetch = fetch

    def materialize(self, store: Store, key: str) -> dict[str, Any] | None:
        """The entry for ``key`` with its layer blob verified into the store, or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        desc = _entry_layer(entry, f"cache {self.name}: entry {key}")
        if desc is None:
            return dict(entry)
        if not store.blobs.has(desc.digest):
            try:
                self._fetch(desc)
            except DistillError as e:
                raise ImageError(f"cache {self.name}: layer {desc.digest}: {e.message}",
                                 hint=e.hint) from None
        claimed = Digest(entry["diff_id"])
        facts = store.layer_facts(desc.digest)
        if facts is None or facts.diff_id != claimed:
            with store.blobs.open(desc.digest) as f:
                computed, size = compute_diff_id(f, desc.media_type, f"layer {desc.digest}")
            store.record_layer(desc.digest, LayerFacts(computed, size),
                               replace=facts is not None)
            if computed != claimed:
                return None       # a lie about the layer: not a hit
            facts = LayerFacts(computed, size)
        return {**entry, "size": facts.uncompressed_size}


def import_cache(store: Store, registries: Registries | None, spec: CacheSpec,
                 log: Callable[[str], None] = lambda s: None) -> ImportedCache | None:
    """Read a ``--cache-from``. A cache that does not exist yet is no error (the first
    build of a pipeline has none), as with buildx; a broken one is."""
    if spec.type == "local":
        assert spec.path is not None
        return _import_local(store, spec.path)
    if registries is None:
        raise UsageError("--cache-from type=registry needs registry access")
    ref = normalize_reference(spec.ref)
    client = registries.client(ref.domain)
    # a digest pins the cache: what arrives must hash to it, whoever controls the tag
    found = fetch_manifest(store, client, ref, ref.digest or str(ref.tag), missing_ok=True)
    if found is None:
        log(f"no cache at {spec.ref} yet")
        return None
    _, doc = found
    config = _config_desc(doc, spec.ref)
    fetch_blob(store, client, ref.repository, config, f"cache config {config.digest}")
    entries = _checked_entries(load_json_doc(store.blobs.read(config.digest),
                                             f"cache {spec.ref}"), f"cache {spec.ref}")
    return ImportedCache(spec.ref, entries, lambda desc: fetch_blob(
        store, client, ref.repository, desc, f"cached layer {desc.digest}"))


def import_caches(store: Store, registries: Registries | None, specs: Iterable[CacheSpec],
                  log: Callable[[str], None] = lambda s: None) -> list[ImportedCache]:
    """Every ``--cache-from`` that can be read; one that cannot is a warning, as in buildx
    (a cache only saves time)."""
    out = []
    for spec in specs:
        try:
            cache = import_cache(store, registries, spec, log)
        except DistillError as e:
            log(f"warning: cannot use cache {spec.ref or spec.path}: {e.message}")
            continue
        if cache is not None:
            out.append(cache)
    return out


def _config_desc(doc: dict[str, Any], name: str) -> Descriptor:
    config = descriptor(doc.get("config"), f"cache {name}: config")
    if config.media_type != CACHE_CONFIG:
        raise ImageError(f"{name} is not a distill cache (its config is {config.media_type!r})",
                         hint="--cache-from names what an earlier --cache-to wrote")
    if config.size > MAX_CACHE_CONFIG:
        raise ImageError(f"cache {name}: config of {config.size} bytes is too large")
    return config


def _import_local(store: Store, path: Path) -> ImportedCache | None:
    if not (path / "index.json").exists():
        return None
    name = str(path)

    def read_blob(desc: Descriptor) -> None:
        fd = open_in_root(path, f"blobs/sha256/{desc.digest.hex}", follow=False,
                          what=f"cache {name}: blob {desc.digest}")
        if fd is None:
            raise ImageError(f"cache {name}: blob {desc.digest} is missing")
        with open(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size != desc.size:
                raise ImageError(f"cache {name}: blob {desc.digest} is not {desc.size} bytes")
            store.blobs.put_stream(f, expected=desc.digest)

    def read_json(rel: str, desc: Descriptor | None) -> dict[str, Any]:
        fd = open_in_root(path, rel, follow=False, what=f"cache {name}: {rel}")
        if fd is None:
            raise ImageError(f"cache {name}: {rel} is missing")
        with open(fd, "rb") as f:
            data = f.read(MAX_CACHE_CONFIG + 1)
        if len(data) > MAX_CACHE_CONFIG:
            raise ImageError(f"cache {name}: {rel} is too large")
        if desc is not None and Digest.of_bytes(data) != desc.digest:
            raise ImageError(f"cache {name}: {rel} does not hash to {desc.digest}")
        return load_json_doc(data, f"cache {name}: {rel}")

    index = read_json("index.json", None)
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise ImageError(f"cache {name}: index.json lists no manifest")
    mdesc = descriptor(manifests[0], f"cache {name}: index.json manifests[0]")
    manifest = read_json(f"blobs/sha256/{mdesc.digest.hex}", mdesc)
    config = _config_desc(manifest, name)
    entries = _checked_entries(read_json(f"blobs/sha256/{config.digest.hex}", config),
                               f"cache {name}")
    return ImportedCache(name, entries, read_blob)


# -- exporting ---------------------------------------------------------------------------------

def cache_document(entries: dict[str, dict[str, Any]]) -> tuple[bytes, bytes, list[Descriptor]]:
    """(config bytes, manifest bytes, layer descriptors) of a cache holding ``entries``."""
    config = json.dumps({"version": 1, "entries": entries}, sort_keys=True,
                        separators=(",", ":")).encode()
    layers: dict[Digest, Descriptor] = {}
    for entry in entries.values():
        desc = _entry_layer(entry, "cache entry")
        if desc is not None:
            layers[desc.digest] = Descriptor(desc.media_type, desc.digest, desc.size)
    ordered = sorted(layers.values(), key=lambda d: str(d.digest))
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": CACHE_CONFIG,
        "config": Descriptor(CACHE_CONFIG, Digest.of_bytes(config), len(config)).to_dict(),
        "layers": [d.to_dict() for d in ordered],
    }
    return config, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(), ordered


def export_cache(store: Store, registries: Registries | None, spec: CacheSpec,
                 entries: dict[str, dict[str, Any]],
                 log: Callable[[str], None] = lambda s: None) -> Digest | None:
    """Write ``entries`` (their layer blobs are in the store) where ``spec`` says; with
    ``ignore-error=true`` a failure is a warning (and None), as in buildx."""
    try:
        return _export_cache(store, registries, spec, entries, log)
    except DistillError as e:
        if not spec.ignore_error:
            raise
        log(f"warning: cache export to {spec.ref or spec.path} failed: {e.message}")
        return None


def _export_cache(store: Store, registries: Registries | None, spec: CacheSpec,
                  entries: dict[str, dict[str, Any]],
                  log: Callable[[str], None]) -> Digest:
    config, manifest, layers = cache_document(entries)
    store.blobs.put_bytes(config)
    if spec.type == "local":
        assert spec.path is not None
        _export_local(store, spec.path, config, manifest, layers)
    else:
        if registries is None:
            raise UsageError("--cache-to type=registry needs registry access")
        ref = normalize_reference(spec.ref)
        config_desc = Descriptor(CACHE_CONFIG, Digest.of_bytes(config), len(config))
        push_blobs_and_manifest(store, registries, ref, [config_desc, *layers], manifest,
                                mt.OCI_MANIFEST, log=log)
    log(f"exported {len(entries)} cache entries to {spec.ref or spec.path}")
    return Digest.of_bytes(manifest)


def _export_local(store: Store, dest: Path, config: bytes, manifest: bytes,
                  layers: Iterable[Descriptor]) -> None:
    """Write the cache into the layout ``dest``. Every write, rename and removal happens
    relative to descriptors of ``dest`` and ``blobs/sha256`` opened without following
    symlinks, so a ``blobs`` swapped for a symlink (by whoever else can write in a shared
    cache directory) cannot lead them out of it."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"--cache-to dest={dest}: {e.strerror or e}",
                         hint="name a directory (not a symlink) distill may write") from None
    try:
        blobs = _subdir(_subdir(root, "blobs", dest), "sha256", dest, close_parent=True)
        try:
            _write_cache_layout(store, root, blobs, config, manifest, layers)
        finally:
            os.close(blobs)
    except OSError as e:
        raise UsageError(f"--cache-to dest={dest}: {e.strerror or e}") from None
    finally:
        os.close(root)


def _subdir(parent: int, name: str, dest: Path, close_parent: bool = False) -> int:
    """``parent/name`` (made if missing) opened as a directory, never through a symlink."""
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=parent)
        except OSError as e:
            raise UsageError(f"--cache-to dest={dest}: {name} is not a directory "
                             f"({e.strerror})", hint="a cache directory holds an OCI layout "
                             "distill wrote; remove what is in the way") from None
    finally:
        if close_parent:
            os.close(parent)


def _write_at(directory: int, name: str, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``name`` in ``directory`` atomically: a temp file, then a rename."""
    tmp = f".{name}.tmp-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=directory)
    try:
        with open(fd, "wb") as out:
            if callable(data):
                data(out)
            else:
                out.write(data)
        os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=directory)
        except FileNotFoundError:
            pass
        raise


def _write_cache_layout(store: Store, root: int, blobs: int, config: bytes, manifest: bytes,
                        layers: Iterable[Descriptor]) -> None:
    wanted = {Digest.of_bytes(config).hex: config, Digest.of_bytes(manifest).hex: manifest}
    for hexname, data in wanted.items():
        _write_at(blobs, hexname, data)
    keep = set(wanted)
    for desc in layers:
        keep.add(desc.digest.hex)
        try:
            st = os.stat(desc.digest.hex, dir_fd=blobs, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_size == desc.size:
                continue      # written by an earlier export (importers verify it anyway)
        except FileNotFoundError:
            pass
        with store.blobs.open(desc.digest) as src:
            def copy(out: BinaryIO, src: BinaryIO = src) -> None:
                shutil.copyfileobj(src, out, 1 << 20)

            _write_at(blobs, desc.digest.hex, copy)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [{
        "mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of_bytes(manifest)),
        "size": len(manifest), "artifactType": CACHE_CONFIG,
        "annotations": {mt.ANNOTATION_REF_NAME: CACHE_TAG}}]}
    _write_at(root, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    _write_at(root, "index.json", json.dumps(index, indent=2).encode())
    # blobs of earlier exports that no entry names any more: a cache dir does not grow
    # without bound (only names that are digests are ever removed)
    for entry in os.scandir(blobs):
        if len(entry.name) == 64 and entry.name not in keep and entry.is_file(
                follow_symlinks=False):
            os.unlink(entry.name, dir_fd=blobs)
