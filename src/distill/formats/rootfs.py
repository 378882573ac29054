"""``distill import``: a root filesystem tarball becomes a one-layer base image."""

from __future__ import annotations

import lzma
import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO

from isal import igzip

from distill.errors import ImageError
from distill.formats.image_archive import image_archive_kind
from distill.formats.layers import GZIP_ERRORS
from distill.formats.stored import record_facts
from distill.image.image import Image, Layer
from distill.limits import LimitedReader, limited_reader
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig, RuntimeConfig
from distill.oci.descriptor import Descriptor
from distill.oci.platform import Platform
from distill.store.store import Store

_READ_ERRORS: tuple[type[BaseException], ...] = (*GZIP_ERRORS, lzma.LZMAError)
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _decompressed(f: BinaryIO) -> BinaryIO:
    magic = f.read(6)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return igzip.IGzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(f)  # type: ignore[return-value]
    return f


def import_rootfs(store: Store, tarball: Path, *, platform: Platform | None = None,
                  cmd: tuple[str, ...] | None = None) -> Image:
    if not tarball.is_file():
        raise ImageError(f"{tarball}: no such file")
    try:
        with open(tarball, "rb") as raw, _decompressed(raw) as plain:
            src = limited_reader(plain, str(tarball), raw=raw)
            head = src.read(512)
            if len(head) < 512 or head[257:262] != b"ustar":
                raise ImageError(f"{tarball} is not a tar archive")

            def produce(out: BinaryIO) -> None:
                out.write(head)
                kind = image_archive_kind(_top_level_names(head, src, out))
                if kind is not None:
                    raise ImageError(f"{tarball} is {kind}, not a root filesystem",
                                     hint=f"load its images with 'distill load -i {tarball}'")
                shutil.copyfileobj(src, out, 1 << 20)

            digest, size, diff_id, usize = store.blobs.write_gzip_layer(produce)
    except _READ_ERRORS as e:
        raise ImageError(f"cannot read {tarball}: {e}") from None
    except tarfile.TarError as e:
        raise ImageError(f"{tarball} is not a valid tar archive: {e}") from None
    layer = Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id, usize)
    record_facts(store, layer)
    config = ImageConfig(platform=platform or Platform.host(),
                         config=RuntimeConfig(env=(DEFAULT_PATH,), cmd=cmd))
    return Image(config).append_layer(layer, f"distill import {tarball.name}")


class _PassOn:
    """Reads ``src`` (after ``head``, already written), writing what it reads to ``out``."""

    def __init__(self, head: bytes, src: LimitedReader, out: BinaryIO) -> None:
        self._head = head
        self._src = src
        self._out = out

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data = self._head if n is None or n < 0 else self._head[:n]
            self._head = self._head[len(data):]
            return data
        data = self._src.read(n)
        self._out.write(data)
        return data


def _top_level_names(head: bytes, src: LimitedReader, out: BinaryIO) -> set[str]:
    """The names at the top of the tar (and ``DIR/layer.tar``, ``blobs/...``), read while
    the tar passes on to ``out``: what tells a saved image from a root filesystem."""
    names: set[str] = set()
    reader = _PassOn(head, src, out)
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if len(parts) == 1 or (len(parts) == 2 and parts[1] == "layer.tar"):
                names.add("/".join(parts))
            elif parts[:1] == ["blobs"]:
                names.add("blobs/")
    return names
