"""Reading an OCI image layout directory into the store, trusting nothing it says.

A layout is hostile input (a downloaded base image): every JSON document is checked for
shape before use, every blob must be a regular file of the size its descriptor gives and
hash to its digest, and every layer must unpack to the diff_id its config lists — computed
here from the bytes (or known from an earlier computation over the same blob), never taken
from the config. Layer and diff_id counts must match. Anything wrong is an ImageError
naming the layout and what is wrong.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Self

from distill.confine import open_in_root
from distill.errors import DigestMismatchError, DistillError, ImageError
from distill.formats.layers import check_media_type, compute_diff_id
from distill.formats.stored import save
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig
from distill.oci.descriptor import Descriptor, load_json
from distill.oci.digest import Digest, HashingWriter
from distill.oci.platform import Platform
from distill.store.store import LayerFacts, Store

#: index.json, manifests and configs larger than this are refused.
MAX_JSON_BYTES = 8 << 20
#: Indexes nested deeper than this are refused.
MAX_INDEX_DEPTH = 4
CONFIGS = (mt.OCI_CONFIG, mt.DOCKER_CONFIG)


def import_layout(store: Store, path: Path, ref: str | None) -> Image:
    """Copy the image ``ref`` of the OCI layout at ``path`` into the store, verifying
    every blob's digest and size and every layer's diff_id. Nothing reaches the store's
    blobs unless the whole image checks out."""
    with reported(f"OCI layout {path}: "):
        if path.is_file():
            raise ImageError("OCI layout tarballs are not read yet; unpack it to a directory")
        with Staging(store) as staging:
            image = LayoutImporter(store, DirSource(path), staging).run(ref)
            staging.commit()
            save(store, image)
            return image


@contextmanager
def reported(prefix: str) -> Iterator[None]:
    """Errors inside name their source (``prefix``) once; what a shape check missed (a
    TypeError, a KeyError...) is an ImageError too, never a traceback."""
    try:
        yield
    except DistillError as e:
        if not e.message.startswith(prefix):
            e.message = prefix + e.message
            e.args = (e.message,)
        raise
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as e:
        # Shapes are checked before use; this is the net for what a check missed.
        raise ImageError(f"{prefix}malformed content ({type(e).__name__}: {e})") from None


# -- shape checks --------------------------------------------------------------------------

def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageError(f"{what} is {_kind(value)}, not a JSON object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImageError(f"{what} is {_kind(value)}, not a list")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def descriptor(value: object, what: str) -> Descriptor:
    """A descriptor after checking every field's type (sha256 digests only)."""
    d = _obj(value, what)
    media_type, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ImageError(f"{what}: mediaType is {_kind(media_type)}, not a media type")
    if not isinstance(digest, str):
        raise ImageError(f"{what}: digest is {_kind(digest)}, not a digest")
    if not digest.startswith("sha256:"):
        raise ImageError(f"{what}: digest {digest[:80]!r} is not a sha256 digest",
                         hint="distill reads sha256 layouts only")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ImageError(f"{what}: size is {size!r}, not a byte count")
    annotations = d.get("annotations")
    if annotations is not None and not (
            isinstance(annotations, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())):
        raise ImageError(f"{what}: annotations must map strings to strings")
    platform = d.get("platform")
    if platform is not None and not (
            isinstance(platform, dict)
            and all(isinstance(platform.get(k, ""), str) for k in ("os", "architecture",
                                                                  "variant"))):
        raise ImageError(f"{what}: platform must be an object of strings")
    return Descriptor(media_type, _digest(digest, what), size, dict(annotations or {}),
                      Platform.from_dict(platform) if platform else None)


def _digest(value: str, what: str) -> Digest:
    try:
        return Digest(value)
    except ImageError:
        raise ImageError(f"{what}: invalid digest {value[:80]!r}") from None


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        return load_json(data, what)
    except RecursionError:
        raise ImageError(f"{what} nests too deeply to be read") from None


# -- sources and staging -------------------------------------------------------------------

class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Source(Protocol):
    """Where a layout's files come from: a directory, or a tar read by formats/image_archive."""

    def read_json(self, rel: str, what: str) -> bytes | None:
        """The small file ``rel`` (at most MAX_JSON_BYTES), or None when there is none."""

    def stage(self, rel: str, what: str, desc: Descriptor, staging: Staging) -> None:
        """Put the blob file ``rel`` into ``staging`` as ``desc`` (its size and digest
        checked); FileNotFoundError when there is none."""


class Staging:
    """Blobs verified into a private temp dir of this process, moved into the store's
    blobs only by :meth:`commit`, once everything read checks out: a refused layout or
    archive leaves nothing behind (the temp dir goes when the process ends, even killed)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._dir_cm = store.blobs.temp_dir(prefix="import-")
        self.dir = Path()
        self._files: dict[Digest, Path] = {}
        self._facts: dict[Digest, tuple[LayerFacts, bool]] = {}

    def __enter__(self) -> Self:
        self.dir = self._dir_cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir_cm.__exit__(None, None, None)

    def has(self, digest: Digest) -> bool:
        return digest in self._files

    def path(self, digest: Digest) -> Path:
        """The file of a staged blob, or of one already in the store."""
        return self._files.get(digest) or self.store.blobs.path(digest)

    def copy_in(self, src: Readable, expected: Digest) -> None:
        """Copy ``src`` to a staged file, which must hash to ``expected``."""
        fd, name = tempfile.mkstemp(dir=self.dir, prefix="blob-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                hw = HashingWriter(f)
                while chunk := src.read(1 << 20):
                    hw.write(chunk)
            digest = hw.digest()
            if digest != expected:
                raise DigestMismatchError(f"content hashes to {digest}, expected {expected}")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._files[expected] = path

    def add(self, path: Path, digest: Digest) -> None:
        """A file in this process's temp dir that distill itself hashed to ``digest``."""
        self._files.setdefault(digest, path)

    def record(self, blob: Digest, facts: LayerFacts, replace: bool) -> None:
        """Layer facts to record once the blob is in the store."""
        self._facts[blob] = (facts, replace)

    def commit(self) -> None:
        """Move every staged blob into the store, then record the layers' facts."""
        for digest, path in self._files.items():
            if not self.store.blobs.has(digest):
                self.store.blobs.adopt(path, digest)
        for blob, (facts, replace) in self._facts.items():
            self.store.record_layer(blob, facts, replace=replace)


class DirSource:
    """A layout directory: files opened inside it, never through a symlink out of it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_json(self, rel: str, what: str) -> bytes | None:
        try:
            with self._open(rel, what, None) as f:
                return read_capped(f, what)
        except FileNotFoundError:
            return None

    def stage(self, rel: str, what: str, desc: Descriptor, staging: Staging) -> None:
        with self._open(rel, what, desc.size) as f:
            staging.copy_in(_Capped(f, desc.size), desc.digest)

    @contextmanager
    def _open(self, rel: str, what: str, size: int | None) -> Iterator[BinaryIO]:
        """The regular file ``rel`` names inside the layout (no symlink leads out of it,
        none is the file itself; no device or FIFO), of ``size`` bytes if given;
        FileNotFoundError when there is none."""
        fd = open_in_root(self.path, rel, follow=False, what=what)
        if fd is None:
            raise FileNotFoundError(rel)
        try:
            st = os.fstat(fd)
            if size is not None and st.st_size != size:
                raise ImageError(f"{what} is {st.st_size} bytes, but its descriptor says {size}")
        except BaseException:
            os.close(fd)
            raise
        with open(fd, "rb") as f:
            yield f


# -- the importer --------------------------------------------------------------------------

class LayoutImporter:
    """Reads images out of a layout ``source`` into ``staging``; the caller commits."""

    def __init__(self, store: Store, source: Source, staging: Staging) -> None:
        self.store = store
        self.source = source
        self.staging = staging

    def run(self, ref: str | None) -> Image:
        return self.image(self.resolve(self._pick(self.index(), ref)))

    def index(self) -> dict[str, Any]:
        data = self.source.read_json("index.json", "index.json")
        if data is None:
            raise ImageError("not an OCI image layout (no index.json)")
        return _load(data, "index.json")

    def manifests(self, index: dict[str, Any]) -> list[Descriptor]:
        """The images index.json lists, each checked for shape; entries with an
        ``artifactType`` are artifacts beside them (an SBOM referrer), not images."""
        if "manifests" not in index:
            raise ImageError("index.json has no 'manifests'")
        entries = _list(index["manifests"], "index.json 'manifests'")
        return [descriptor(m, f"index.json manifests[{i}]") for i, m in enumerate(entries)
                if not (isinstance(m, dict) and m.get("artifactType"))]

    def _pick(self, index: dict[str, Any], ref: str | None) -> Descriptor:
        manifests = self.manifests(index)
        if ref:
            for m in manifests:
                names = (m.annotations.get(mt.ANNOTATION_REF_NAME),
                         m.annotations.get(mt.ANNOTATION_IMAGE_NAME))
                if ref in names:
                    return m
            raise ImageError(f"no image tagged {ref!r}")
        if len(manifests) != 1:
            raise ImageError(f"the layout holds {len(manifests)} images; name one with PATH:TAG")
        return manifests[0]

    def resolve(self, desc: Descriptor) -> Descriptor:
        """The image manifest ``desc`` names: itself, or the host's entry of its index."""
        for _ in range(MAX_INDEX_DEPTH):
            if desc.media_type not in mt.INDEXES:
                break
            desc = self._pick_platform(self._json(desc, f"image index {desc.digest}"), desc)
        else:
            raise ImageError(f"image indexes nest more than {MAX_INDEX_DEPTH} deep")
        if desc.media_type not in mt.MANIFESTS:
            raise ImageError(f"{desc.digest} has media type {desc.media_type!r}, "
                             "not an image manifest")
        return desc

    def _pick_platform(self, index: dict[str, Any], desc: Descriptor) -> Descriptor:
        what = f"image index {desc.digest}"
        entries = _list(index.get("manifests"), f"{what}: 'manifests'")
        host = Platform.host()
        for i, entry in enumerate(entries):
            m = descriptor(entry, f"{what}: manifests[{i}]")
            if m.media_type in mt.MANIFESTS + mt.INDEXES and (
                    m.platform is None
                    or (m.platform.os, m.platform.architecture) == (host.os, host.architecture)):
                return m
        raise ImageError(f"{what} has no manifest for platform {host}")

    def image(self, desc: Descriptor) -> Image:
        return self.image_and_config(desc)[0]

    def image_and_config(self, desc: Descriptor) -> tuple[Image, Digest]:
        """The image of the manifest ``desc``, and the digest of the config blob its
        manifest names (the image's own config is written again, by distill)."""
        manifest = self._json(desc, f"manifest {desc.digest}")
        what = f"manifest {desc.digest}"
        config_desc, layer_descs = manifest_parts(manifest, what)
        config = config_from_json(self._json(config_desc, f"config {config_desc.digest}"),
                                  f"config {config_desc.digest}")
        if len(layer_descs) != len(config.diff_ids):
            raise ImageError(f"{what} lists {len(layer_descs)} layers but its config has "
                             f"{len(config.diff_ids)} diff_ids",
                             hint="every layer needs exactly one diff_id, in order")
        layers = []
        for i, (ldesc, diff_id) in enumerate(zip(layer_descs, config.diff_ids)):
            check_media_type(ldesc.media_type, f"layer {i} ({ldesc.digest})")
            self._copy(ldesc)
            layers.append(self.layer(ldesc, diff_id))
        return Image(config, tuple(layers)), config_desc.digest

    def layer(self, desc: Descriptor, claimed: Digest) -> Layer:
        """The layer ``desc`` (staged or in the store), once its blob is known to unpack to
        ``claimed``.

        Facts are what distill computed for this blob before: when they agree with the
        claim, the claim is true. Otherwise the blob is hashed now."""
        facts = self.store.layer_facts(desc.digest)
        if facts is not None and facts.diff_id == claimed:
            return Layer(desc, claimed, facts.uncompressed_size)
        what = f"layer {desc.digest}"
        if desc.media_type == mt.OCI_LAYER_TAR:
            # staged blobs were hashed to their digest (store blobs when written): an
            # uncompressed layer's diff_id is that digest
            computed, size = desc.digest, desc.size
        else:
            with open(self.staging.path(desc.digest), "rb") as f:
                computed, size = compute_diff_id(f, desc.media_type, what)
        if computed != claimed:
            raise DigestMismatchError(
                f"{what} unpacks to {computed}, but the config lists it as {claimed}",
                hint="the layout is corrupt, or passes one layer off as another")
        self.staging.record(desc.digest, LayerFacts(computed, size), facts is not None)
        return Layer(desc, claimed, size)

    # -- blobs ------------------------------------------------------------------------------
    def _copy(self, desc: Descriptor) -> None:
        what = f"blob {desc.digest}"
        if self.staging.has(desc.digest):
            return
        if self.store.blobs.has(desc.digest):
            actual = self.store.blobs.path(desc.digest).stat().st_size
            if actual != desc.size:
                raise ImageError(f"{what} is {actual} bytes, but its descriptor says {desc.size}")
            return
        try:
            self.source.stage(f"blobs/sha256/{desc.digest.hex}", what, desc, self.staging)
        except FileNotFoundError:
            raise ImageError(f"{what} is missing") from None
        except DigestMismatchError as e:
            raise DigestMismatchError(f"{what}: {e.message}") from None

    def _json(self, desc: Descriptor, what: str) -> dict[str, Any]:
        if desc.size > MAX_JSON_BYTES:
            raise ImageError(f"{what} is {desc.size} bytes; JSON documents over "
                             f"{MAX_JSON_BYTES} bytes are refused")
        self._copy(desc)
        return _load(self.staging.path(desc.digest).read_bytes(), what)


def manifest_parts(manifest: dict[str, Any], what: str
                   ) -> tuple[Descriptor, list[Descriptor]]:
    """An image manifest's config and layer descriptors, shape-checked; ``what`` names
    the manifest in errors."""
    if "config" not in manifest:
        raise ImageError(f"{what} has no 'config'")
    config_desc = descriptor(manifest["config"], f"{what}: 'config'")
    if config_desc.media_type not in CONFIGS:
        raise ImageError(f"{what}: config media type {config_desc.media_type!r} is not "
                         "an image config (is this an artifact, not an image?)")
    layers = [descriptor(x, f"{what}: layers[{i}]") for i, x in
              enumerate(_list(manifest.get("layers", []), f"{what}: 'layers'"))]
    return config_desc, layers


def config_from_json(doc: dict[str, Any], what: str) -> ImageConfig:
    """An image config, after checking the shape of what distill reads from it."""
    rootfs = _obj(doc.get("rootfs"), f"{what}: 'rootfs'")
    diff_ids = _list(rootfs.get("diff_ids"), f"{what}: 'rootfs.diff_ids'")
    for i, d in enumerate(diff_ids):
        if not isinstance(d, str):
            raise ImageError(f"{what}: diff_ids[{i}] is {_kind(d)}, not a digest")
        _digest(d, f"{what}: diff_ids[{i}]")
    for key in ("config", "history"):
        if doc.get(key) is not None:
            (_obj if key == "config" else _list)(doc[key], f"{what}: '{key}'")
    for i, h in enumerate(doc.get("history") or []):
        _obj(h, f"{what}: history[{i}]")
    try:
        return ImageConfig.from_dict(doc)
    except ImageError as e:
        raise ImageError(f"{what}: {e.message}") from None


def load_json_doc(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object (``what`` names it in errors; too deep a nesting is an ImageError)."""
    return _load(data, what)


class _Capped:
    """Reads at most ``size`` bytes: a file growing while it is copied cannot grow the copy."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


def read_capped(f: BinaryIO, what: str) -> bytes:
    """All of ``f``, which may hold at most MAX_JSON_BYTES."""
    data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ImageError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    return data
