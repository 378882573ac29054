"""Root filesystems of images: unpacked layer snapshots, overlay mounts, new layers from upper dirs."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from distill import phases
from distill.errors import ImageError
from distill.formats.layers import open_layer_stream, verify_diff_id
from distill.formats.stored import record_facts
from distill.image.image import Image, Layer
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.sandbox import (
    OverlayMount,
    extract_layer,
    overlay_mount,
    rootless,
    sandbox_ids,
    write_layer_from_upper,
)
from distill.store.blobs import DEFAULT_COMPRESSION, Compression, hash_stream, remove_tree
from distill.store.store import LayerFacts, Store


class RootfsManager:
    def __init__(self, store: Store, mtime_clamp: int | None = None,
                 compression: Compression = DEFAULT_COMPRESSION) -> None:
        self.store = store
        self.mtime_clamp = mtime_clamp
        self.compression = compression      # of the blobs this build makes
        store.claim_snapshots("user" if rootless.active() else "trusted")

    def snapshot(self, layer: Layer) -> Path:
        """The layer unpacked in overlayfs format, extracting it on first use.

        A snapshot is named by its diff_id, so it is only ever made from content that
        hashed to that diff_id here: the stream is hashed while it is unpacked, and a
        layer whose blob does not unpack to its diff_id is refused before anything is
        committed (an image cannot place its files under another image's name)."""
        path = self.store.snapshot_path(layer.diff_id)
        if path.is_dir():
            return path
        if layer.blob is None:   # lazy: its snapshot was made with it; or a blob since
            made = self.store.made_blob(layer.diff_id)
            if made is None:
                raise ImageError(f"layer {layer.diff_id} is no longer in the store (pruned "
                                 "while the build ran?)", hint="build again")
            layer = Layer(made, layer.diff_id, layer.uncompressed_size)
        assert layer.blob is not None
        what = f"layer {layer.blob.digest}"
        phases.enter("unpack")
        tmp = Path(tempfile.mkdtemp(dir=self.store.blobs.tmp_dir, prefix="snap-"))
        try:
            with self.store.blobs.open(layer.blob.digest) as raw, \
                    open_layer_stream(raw, layer.blob.media_type, what) as stream:
                extract_layer(stream, tmp, what)  # type: ignore[arg-type]  # a reader
                stream.drain()
            verify_diff_id(stream, layer.diff_id, what)
        except BaseException:
            remove_tree(tmp)
            raise
        # what was computed (a pulled layer's facts are first known here)
        self.store.record_layer(layer.blob.digest, LayerFacts(layer.diff_id, stream.count))
        return self.store.commit_snapshot(tmp, layer.diff_id)

    @contextmanager
    def mounted(self, image: Image, sandbox: bool = False) -> Iterator[OverlayMount]:
        """A writable view of the image's root filesystem; changes are discarded."""
        with self.changes(image, keep=False, sandbox=sandbox) as ch:
            yield ch.mount

    @contextmanager
    def changes(self, image: Image, keep: bool = True, sandbox: bool = False,
                lazy: bool = False) -> Iterator[Changes]:
        """Mount the image; after the block, ``.layer`` holds what changed (or None).

        With ``sandbox``, the mount is the idmapped view a RUN step works in (only
        the sandbox may write to it; see ``distill.sandbox.run``). ``lazy``: see
        :meth:`commit`."""
        lowers = _topmost_once([self.snapshot(layer) for layer in reversed(image.layers)])
        with self.store.blobs.temp_dir("mnt-") as scratch:
            os.chmod(scratch, 0o711)
            ch = Changes()
            with overlay_mount(lowers, scratch,
                               sandbox=sandbox_ids() if sandbox else None) as mount:
                ch.mount = mount
                yield ch
            if keep:
                ch.layer = self.commit(mount.upper, lazy=lazy)

    def commit(self, upper: Path, lazy: bool = False) -> Layer | None:
        """Turn an upper dir into a layer in the store (None if nothing changed).

        ``lazy``: only hash the layer's tar (its diff_id) and keep the directory as its
        snapshot; no blob is written until an output or a cache asks for one
        (:meth:`materialize`). A stage whose layers no output ships (a build stage that
        only COPY --from reads) is then never compressed, as with BuildKit's lazy blobs."""
        if not any(os.scandir(upper)):
            return None
        phases.enter("diff")
        if lazy:
            diff_id, size = hash_stream(
                lambda out: write_layer_from_upper(upper, out, mtime_clamp=self.mtime_clamp))
            layer = Layer(None, diff_id, size)
        else:
            c = self.compression
            digest, size, diff_id, usize = self.store.blobs.write_layer(
                lambda out: write_layer_from_upper(upper, out, mtime_clamp=self.mtime_clamp),
                c)
            layer = Layer(Descriptor(c.media_type, digest, size), diff_id, usize)
            record_facts(self.store, layer)
            self.store.record_made_blob(diff_id, layer.compressed, c.tag)
        if not self.store.snapshot_path(layer.diff_id).exists():
            self.store.commit_snapshot(upper, layer.diff_id)
        return layer

    def materialize(self, image: Image, convert: frozenset[Digest] = frozenset()) -> Image:
        """``image`` with a blob for every layer: a lazy layer gets the blob distill made
        for it before, or one compressed from its snapshot now (which must still hash
        to its diff_id). Layers in ``convert`` (the build's own, or all with
        force-compression) whose blob is compressed otherwise than this build's
        compression are compressed again, from the same tar."""
        if all(layer.blob is not None and layer.diff_id not in convert
               for layer in image.layers):
            return image

        def one(layer: Layer) -> Layer:
            if layer.blob is not None and layer.diff_id in convert:
                return self._recompressed(layer)
            return self.materialize_layer(layer)

        # layers compress in parallel (isal, zlib and zstd release the GIL)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                thread_name_prefix="compress") as pool:
            return Image(image.config, tuple(pool.map(one, image.layers)))

    def materialize_layer(self, layer: Layer) -> Layer:
        if layer.blob is not None:
            return layer
        snapshot = self.store.snapshot_path(layer.diff_id)
        return self._made(layer, lambda out: write_layer_from_upper(snapshot, out),
                          missing=not snapshot.is_dir())

    @contextmanager
    def lazy_tar(self, layer: Layer) -> Iterator[BinaryIO]:
        """The uncompressed tar of a lazy layer, written from its snapshot as it is read
        (``distill build --report`` reads a build stage no output compressed)."""
        snapshot = self.store.snapshot_path(layer.diff_id)
        if not snapshot.is_dir():
            raise ImageError(f"layer {layer.diff_id} is no longer in the store (pruned "
                             "while the build ran?)", hint="build again")
        read_end, write_end = os.pipe()
        reader, out = open(read_end, "rb"), open(write_end, "wb")   # noqa: SIM115
        failed: list[BaseException] = []

        def write() -> None:
            try:
                with out:
                    write_layer_from_upper(snapshot, out)
            except BrokenPipeError:
                pass                  # the reader stopped early (its own error says why)
            except BaseException as e:  # noqa: BLE001 - handed to the reader's thread
                failed.append(e)

        with reader:
            writer = threading.Thread(target=write, name="lazy-tar", daemon=True)
            try:
                writer.start()
            except BaseException:
                out.close()
                raise
            try:
                yield reader
            except BaseException:
                reader.close()        # a writer still writing meets a closed pipe
                writer.join()
                if failed:            # the writer's error is why the tar broke off
                    raise failed[0] from None
                raise
            finally:
                reader.close()
                writer.join()
        if failed:
            raise failed[0]

    def _recompressed(self, layer: Layer) -> Layer:
        blob = layer.compressed
        if blob.media_type == self.compression.media_type:   # as BuildKit: kept as it is
            return layer

        def tar(out: BinaryIO) -> None:
            with self.store.blobs.open(blob.digest) as raw, \
                    open_layer_stream(raw, blob.media_type, f"layer {blob.digest}") as stream:
                shutil.copyfileobj(stream, out, 1 << 20)

        return self._made(layer, tar, missing=False)

    def _made(self, layer: Layer, tar: Callable[[BinaryIO], None], *, missing: bool) -> Layer:
        """The blob of ``layer`` in this build's compression: made before, or now."""
        c = self.compression
        made = self.store.made_blob(layer.diff_id, c.tag)
        if made is not None:
            return Layer(made, layer.diff_id, layer.uncompressed_size)
        if missing:
            raise ImageError(f"layer {layer.diff_id} is no longer in the store (pruned "
                             "while the build ran?)", hint="build again")
        digest, size, diff_id, usize = self.store.blobs.write_layer(tar, c)
        if diff_id != layer.diff_id:
            raise ImageError(f"layer {layer.diff_id} now hashes to {diff_id}: its snapshot "
                             "or blob changed", hint="distill prune, then build again")
        made_layer = Layer(Descriptor(c.media_type, digest, size), diff_id, usize)
        record_facts(self.store, made_layer)
        self.store.record_made_blob(diff_id, made_layer.compressed, c.tag)
        return made_layer


def _topmost_once(lowers: list[Path]) -> list[Path]:
    """Overlay lowers (top first) with each snapshot kept only where it is topmost.

    An image may hold one layer twice (``COPY . /app/`` twice writes the same layer),
    and overlayfs refuses a directory given twice as a lower (ELOOP). Leaving out the
    lower copy changes nothing: a path is decided by the topmost layer that has it (or
    hides it), and a layer that holds the path, or hides it, also does so higher up."""
    seen: set[Path] = set()
    out = []
    for lower in lowers:
        if lower not in seen:
            seen.add(lower)
            out.append(lower)
    return out


class Changes:
    mount: OverlayMount
    layer: Layer | None = None
