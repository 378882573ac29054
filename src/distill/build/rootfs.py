"""Root filesystems of images: unpacked layer snapshots, overlay mounts, new layers from upper dirs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isal import igzip

from distill.errors import ImageError
from distill.image.image import Image, Layer
from distill.formats.stored import record_facts
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.sandbox import OverlayMount, extract_layer, overlay_mount, write_layer_from_upper
from distill.store.blobs import remove_tree
from distill.store.store import Store


class RootfsManager:
    def __init__(self, store: Store, mtime_clamp: int | None = None) -> None:
        self.store = store
        self.mtime_clamp = mtime_clamp

    def snapshot(self, layer: Layer) -> Path:
        """The layer unpacked in overlayfs format, extracting it on first use."""
        path = self.store.snapshot_path(layer.diff_id)
        if path.is_dir():
            return path
        if layer.blob.media_type not in mt.GZIP_LAYERS + (mt.OCI_LAYER_TAR,):
            raise ImageError(f"layer media type {layer.blob.media_type!r} is not supported yet")
        tmp = Path(tempfile.mkdtemp(dir=self.store.blobs.tmp_dir, prefix="snap-"))
        os.chmod(tmp, 0o755)
        try:
            with self.store.blobs.open(layer.blob.digest) as f:
                if layer.blob.media_type in mt.GZIP_LAYERS:
                    with igzip.IGzipFile(fileobj=f, mode="rb") as gz:
                        extract_layer(gz, tmp)  # type: ignore[arg-type]
                else:
                    extract_layer(f, tmp)
        except BaseException:
            remove_tree(tmp)
            raise
        return self.store.commit_snapshot(tmp, layer.diff_id)

    @contextmanager
    def mounted(self, image: Image) -> Iterator[OverlayMount]:
        """A writable view of the image's root filesystem; changes are discarded."""
        with self.changes(image, keep=False) as ch:
            yield ch.mount

    @contextmanager
    def changes(self, image: Image, keep: bool = True) -> Iterator[Changes]:
        """Mount the image; after the block, ``.layer`` holds what changed (or None)."""
        lowers = [self.snapshot(layer) for layer in reversed(image.layers)]
        with self.store.blobs.temp_dir("mnt-") as scratch:
            os.chmod(scratch, 0o711)
            ch = Changes()
            with overlay_mount(lowers, scratch) as mount:
                ch.mount = mount
                yield ch
            if keep:
                ch.layer = self.commit(mount.upper)

    def commit(self, upper: Path) -> Layer | None:
        """Turn an upper dir into a layer in the store (None if nothing changed)."""
        if not any(os.scandir(upper)):
            return None
        digest, size, diff_id, usize = self.store.blobs.write_gzip_layer(
            lambda out: write_layer_from_upper(upper, out, mtime_clamp=self.mtime_clamp))
        layer = Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id, usize)
        record_facts(self.store, layer)
        if not self.store.snapshot_path(diff_id).exists():
            self.store.commit_snapshot(upper, diff_id)
        return layer


class Changes:
    mount: OverlayMount
    layer: Layer | None = None
