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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from distill.confine import open_in_root
from distill.errors import DigestMismatchError, DistillError, ImageError
from distill.formats.layers import check_media_type, compute_diff_id
from distill.formats.stored import save
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig
from distill.oci.descriptor import Descriptor, load_json
from distill.oci.digest import Digest
from distill.oci.platform import Platform
from distill.store.store import LayerFacts, Store

#: index.json, manifests and configs larger than this are refused.
MAX_JSON_BYTES = 8 << 20
#: Indexes nested deeper than this are refused.
MAX_INDEX_DEPTH = 4
CONFIGS = (mt.OCI_CONFIG, mt.DOCKER_CONFIG)


def import_layout(store: Store, path: Path, ref: str | None) -> Image:
    """Copy the image ``ref`` of the OCI layout at ``path`` into the store, verifying
    every blob's digest and size and every layer's diff_id."""
    prefix = f"OCI layout {path}: "
    try:
        return _Importer(store, path).run(ref)
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


# -- the importer --------------------------------------------------------------------------

class _Importer:
    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = path

    def run(self, ref: str | None) -> Image:
        if self.path.is_file():
            raise ImageError("OCI layout tarballs are not read yet; unpack it to a directory")
        try:
            with self._open("index.json", "index.json", None) as f:
                index = _load(_read_capped(f, "index.json"), "index.json")
        except FileNotFoundError:
            raise ImageError("not an OCI image layout (no index.json)") from None
        desc = self._pick(index, ref)
        for _ in range(MAX_INDEX_DEPTH):
            if desc.media_type not in mt.INDEXES:
                break
            desc = self._pick_platform(self._json(desc, f"image index {desc.digest}"), desc)
        else:
            raise ImageError(f"image indexes nest more than {MAX_INDEX_DEPTH} deep")
        if desc.media_type not in mt.MANIFESTS:
            raise ImageError(f"{desc.digest} has media type {desc.media_type!r}, "
                             "not an image manifest")
        return self._image(desc)

    def _pick(self, index: dict[str, Any], ref: str | None) -> Descriptor:
        if "manifests" not in index:
            raise ImageError("index.json has no 'manifests'")
        entries = _list(index["manifests"], "index.json 'manifests'")
        manifests = [descriptor(m, f"index.json manifests[{i}]") for i, m in enumerate(entries)]
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

    def _image(self, desc: Descriptor) -> Image:
        manifest = self._json(desc, f"manifest {desc.digest}")
        what = f"manifest {desc.digest}"
        if "config" not in manifest:
            raise ImageError(f"{what} has no 'config'")
        config_desc = descriptor(manifest["config"], f"{what}: 'config'")
        if config_desc.media_type not in CONFIGS:
            raise ImageError(f"{what}: config media type {config_desc.media_type!r} is not "
                             "an image config (is this an artifact, not an image?)")
        layer_descs = [descriptor(x, f"{what}: layers[{i}]") for i, x in
                       enumerate(_list(manifest.get("layers", []), f"{what}: 'layers'"))]
        config = self._config(config_desc)
        if len(layer_descs) != len(config.diff_ids):
            raise ImageError(f"{what} lists {len(layer_descs)} layers but its config has "
                             f"{len(config.diff_ids)} diff_ids",
                             hint="every layer needs exactly one diff_id, in order")
        layers = []
        for i, (ldesc, diff_id) in enumerate(zip(layer_descs, config.diff_ids)):
            check_media_type(ldesc.media_type, f"layer {i} ({ldesc.digest})")
            self._copy(ldesc)
            size = self._verified_diff_id(ldesc, diff_id)
            layers.append(Layer(ldesc, diff_id, size))
        image = Image(config, tuple(layers))
        save(self.store, image)
        return image

    def _config(self, desc: Descriptor) -> ImageConfig:
        doc = self._json(desc, f"config {desc.digest}")
        what = f"config {desc.digest}"
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

    def _verified_diff_id(self, desc: Descriptor, claimed: Digest) -> int:
        """The layer's uncompressed size, once its blob is known to unpack to ``claimed``.

        Facts are what distill computed for this blob before: when they agree with the
        claim, the claim is true. Otherwise the blob is hashed now."""
        facts = self.store.layer_facts(desc.digest)
        if facts is not None and facts.diff_id == claimed:
            return facts.uncompressed_size
        what = f"layer {desc.digest}"
        with self.store.blobs.open(desc.digest) as f:
            computed, size = compute_diff_id(f, desc.media_type, what)
        if computed != claimed:
            raise DigestMismatchError(
                f"{what} unpacks to {computed}, but the config lists it as {claimed}",
                hint="the layout is corrupt, or passes one layer off as another")
        self.store.record_layer(desc.digest, LayerFacts(computed, size),
                                replace=facts is not None)
        return size

    # -- blobs ------------------------------------------------------------------------------
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

    def _copy(self, desc: Descriptor) -> None:
        what = f"blob {desc.digest}"
        if self.store.blobs.has(desc.digest):
            actual = self.store.blobs.path(desc.digest).stat().st_size
            if actual != desc.size:
                raise ImageError(f"{what} is {actual} bytes, but its descriptor says {desc.size}")
            return
        try:
            with self._open(f"blobs/sha256/{desc.digest.hex}", what, desc.size) as f:
                capped = _Capped(f, desc.size)
                self.store.blobs.put_stream(capped, expected=desc.digest)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise ImageError(f"{what} is missing") from None
        except DigestMismatchError as e:
            raise DigestMismatchError(f"{what}: {e.message}") from None

    def _json(self, desc: Descriptor, what: str) -> dict[str, Any]:
        if desc.size > MAX_JSON_BYTES:
            raise ImageError(f"{what} is {desc.size} bytes; JSON documents over "
                             f"{MAX_JSON_BYTES} bytes are refused")
        self._copy(desc)
        return _load(self.store.blobs.read(desc.digest), what)


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


def _read_capped(f: BinaryIO, what: str) -> bytes:
    data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ImageError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    return data
