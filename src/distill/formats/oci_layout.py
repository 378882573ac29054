"""OCI image layouts (directory or tar) and Docker archives: read into the store, write from it."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from isal import igzip

from distill.errors import DigestMismatchError, ImageError
from distill.image.image import Image, Layer
from distill.formats.stored import record_facts, save
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig
from distill.oci.descriptor import Descriptor, canonical_json, load_json
from distill.oci.digest import Digest, HashingWriter
from distill.store.store import Store


@dataclass(frozen=True)
class Tagged:
    image: Image
    names: tuple[str, ...] = ()


def _blob_entries(store: Store, images: Sequence[Tagged]) -> Iterator[tuple[Digest, Path | bytes]]:
    """Every blob the images need, each once: layers from store paths, JSON as bytes."""
    seen: set[Digest] = set()
    for tagged in images:
        img = tagged.image
        items: list[tuple[Digest, Path | bytes]] = [
            (layer.blob.digest, store.blobs.path(layer.blob.digest)) for layer in img.layers
        ]
        items.append((img.config_descriptor().digest, img.config_bytes()))
        items.append((img.manifest_descriptor().digest, img.manifest_bytes()))
        for digest, src in items:
            if digest not in seen:
                seen.add(digest)
                yield digest, src


def _index(images: Sequence[Tagged]) -> bytes:
    manifests = []
    for tagged in images:
        desc = tagged.image.manifest_descriptor()
        names = tagged.names or ("",)
        for name in names:
            ann = {}
            if name:
                ann = {mt.ANNOTATION_IMAGE_NAME: name, mt.ANNOTATION_REF_NAME: ref_name(name)}
            manifests.append(Descriptor(desc.media_type, desc.digest, desc.size, ann,
                                        desc.platform).to_dict())
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                       "manifests": manifests}, indent=2).encode()


def ref_name(name: str) -> str:
    """The tag part buildx puts in org.opencontainers.image.ref.name ('app:1' -> '1')."""
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


_LAYOUT = canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})


def write_layout_dir(store: Store, images: Sequence[Tagged], dest: Path) -> None:
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, src in _blob_entries(store, images):
        target = blobs / digest.hex
        if target.exists():
            continue
        tmp = blobs / f".{digest.hex}.tmp"
        if isinstance(src, bytes):
            tmp.write_bytes(src)
        else:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    (dest / "oci-layout").write_bytes(_LAYOUT)
    (dest / "index.json").write_bytes(_index(images))


class _TarWriter:
    """Deterministic tar of blobs: fixed mtime, root owner, sorted once by caller."""

    def __init__(self, out: BinaryIO) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def add_file(self, name: str, path: Path) -> None:
        info = tarfile.TarInfo(name)
        info.size = path.stat().st_size
        info.mode = 0o644
        with open(path, "rb") as f:
            self.tar.addfile(info, f)

    def add_dir(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self.tar.addfile(info)

    def add(self, name: str, src: Path | bytes) -> None:
        if isinstance(src, bytes):
            self.add_bytes(name, src)
        else:
            self.add_file(name, src)

    def close(self) -> None:
        self.tar.close()


def write_layout_tar(store: Store, images: Sequence[Tagged], out: BinaryIO,
                     docker_manifest: bool = False) -> None:
    """An OCI layout as a tar; with docker_manifest, also Docker's manifest.json (docker load)."""
    tw = _TarWriter(out)
    tw.add_bytes("oci-layout", _LAYOUT)
    tw.add_bytes("index.json", _index(images))
    tw.add_dir("blobs/")
    tw.add_dir("blobs/sha256/")
    for digest, src in _blob_entries(store, images):
        tw.add(f"blobs/sha256/{digest.hex}", src)
    if docker_manifest:
        entries = []
        for tagged in images:
            img = tagged.image
            entries.append({
                "Config": f"blobs/sha256/{img.config_descriptor().digest.hex}",
                "RepoTags": [docker_tag(n) for n in tagged.names],
                "Layers": [f"blobs/sha256/{layer.blob.digest.hex}" for layer in img.layers],
            })
        tw.add_bytes("manifest.json", json.dumps(entries).encode())
    tw.close()


def docker_tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + ":latest"


# -- reading -------------------------------------------------------------------

def import_layout(store: Store, path: Path, ref: str | None) -> Image:
    """Copy the image ``ref`` of the OCI layout at ``path`` into the store, verifying every blob."""
    if path.is_file():
        raise ImageError(f"{path}: OCI layout tarballs are not read yet; unpack it to a directory")
    try:
        index = load_json((path / "index.json").read_bytes(), f"{path}/index.json")
    except FileNotFoundError:
        raise ImageError(f"{path} is not an OCI image layout (no index.json)") from None
    desc = _pick(index, ref, path)

    def blob(d: Descriptor) -> Path:
        return path / "blobs" / d.digest.algorithm / d.digest.hex

    def copy(d: Descriptor) -> None:
        if store.blobs.has(d.digest):
            return
        try:
            with open(blob(d), "rb") as f:
                store.blobs.put_stream(f, expected=d.digest)
        except FileNotFoundError:
            raise ImageError(f"{path}: blob {d.digest} is missing") from None

    copy(desc)
    doc = load_json(store.blobs.read(desc.digest), "manifest")
    if doc.get("mediaType") in mt.INDEXES:
        from distill.formats.stored import pick_platform_manifest

        desc = pick_platform_manifest(doc)
        copy(desc)
        doc = load_json(store.blobs.read(desc.digest), "manifest")
    config_desc = Descriptor.from_dict(doc["config"])
    copy(config_desc)
    config = ImageConfig.from_dict(load_json(store.blobs.read(config_desc.digest), "config"))
    layers = []
    for ldesc, diff_id in zip([Descriptor.from_dict(x) for x in doc.get("layers") or []],
                              config.diff_ids):
        copy(ldesc)
        layer = Layer(ldesc, diff_id, _verify_diff_id(store, ldesc, diff_id))
        record_facts(store, layer)
        layers.append(layer)
    image = Image(config, tuple(layers))
    save(store, image)
    return image


def _pick(index: dict[str, object], ref: str | None, path: Path) -> Descriptor:
    manifests = [Descriptor.from_dict(m) for m in index.get("manifests") or []]  # type: ignore[union-attr]
    if ref:
        for m in manifests:
            names = (m.annotations.get(mt.ANNOTATION_REF_NAME), m.annotations.get(mt.ANNOTATION_IMAGE_NAME))
            if ref in names:
                return m
        raise ImageError(f"{path}: no image tagged {ref!r}")
    if len(manifests) != 1:
        raise ImageError(f"{path} holds {len(manifests)} images; name one with PATH:TAG")
    return manifests[0]


def _verify_diff_id(store: Store, desc: Descriptor, diff_id: Digest) -> int:
    facts = store.layer_facts(desc.digest)
    if facts is not None:
        return facts.uncompressed_size
    hw = HashingWriter(None)
    with store.blobs.open(desc.digest) as f:
        stream: BinaryIO = f
        if desc.media_type in mt.GZIP_LAYERS:
            stream = igzip.IGzipFile(fileobj=f, mode="rb")  # type: ignore[assignment]
        elif desc.media_type != mt.OCI_LAYER_TAR:
            raise ImageError(f"layer media type {desc.media_type!r} is not supported yet")
        shutil.copyfileobj(stream, hw, 1 << 20)  # type: ignore[misc]
    if hw.digest() != diff_id:
        raise DigestMismatchError(f"layer {desc.digest} unpacks to {hw.digest()}, "
                                  f"but the config says {diff_id}")
    return hw.size
