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

from distill.formats.layout_import import import_layout
from distill.formats.referrers import Referrer
from distill.image.image import Image
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor, canonical_json
from distill.oci.digest import Digest
from distill.oci.reference import normalize_reference
from distill.store.store import Store


@dataclass(frozen=True)
class Tagged:
    image: Image
    names: tuple[str, ...] = ()
    #: artifacts attached to the image (an SBOM): each listed in index.json, untagged,
    #: with its artifactType, as ORAS writes referrers into a layout
    referrers: tuple[Referrer, ...] = ()


def _blob_entries(store: Store, images: Sequence[Tagged]) -> Iterator[tuple[Digest, Path | bytes]]:
    """Every blob the images need, each once: layers from store paths, JSON as bytes."""
    seen: set[Digest] = set()
    for tagged in images:
        img = tagged.image
        items: list[tuple[Digest, Path | bytes]] = [
            (layer.compressed.digest, store.blobs.path(layer.compressed.digest)) for layer in img.layers
        ]
        items.append((img.config_descriptor().digest, img.config_bytes()))
        items.append((img.manifest_descriptor().digest, img.manifest_bytes()))
        for referrer in tagged.referrers:
            items += [(blob.digest, store.blobs.path(blob.digest)) for blob in referrer.blobs]
            items.append((referrer.descriptor.digest, referrer.manifest))
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
        manifests += [referrer.index_entry() for referrer in tagged.referrers]
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
        # closed by close(): the stream outlives this constructor
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115

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

    def abandon(self) -> None:
        """Give up after a failed write (a full disk): nothing more is written, not even
        at garbage collection, where the stream would try to flush its buffer again."""
        stream = self.tar.fileobj
        self.tar.closed = True  # type: ignore[attr-defined]
        if stream is not None:
            stream.closed = True  # type: ignore[attr-defined]


def write_layout_tar(store: Store, images: Sequence[Tagged], out: BinaryIO,
                     docker_manifest: bool = False) -> None:
    """An OCI layout as a tar; with docker_manifest, also Docker's manifest.json (docker load)."""
    tw = _TarWriter(out)
    try:
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
                    "Layers": [f"blobs/sha256/{layer.compressed.digest.hex}"
                               for layer in img.layers],
                })
            tw.add_bytes("manifest.json", json.dumps(entries).encode())
        tw.close()
    except BaseException:
        tw.abandon()
        raise


def docker_tag(name: str) -> str:
    """A RepoTags entry, as ``docker save`` writes it: ``app:1``, not docker.io/library/app:1."""
    return normalize_reference(name).with_default_tag().familiar


# -- reading: see layout_import ----------------------------------------------------------

__all__ = ["Tagged", "docker_tag", "import_layout", "ref_name", "write_layout_dir",
           "write_layout_tar"]
