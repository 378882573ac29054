"""``distill import``: a root filesystem tarball becomes a one-layer base image."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path
from typing import BinaryIO

from isal import igzip

from distill.errors import ImageError
from distill.formats.layers import GZIP_ERRORS
from distill.formats.stored import record_facts
from distill.image.image import Image, Layer
from distill.limits import limited_reader
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
                shutil.copyfileobj(src, out, 1 << 20)  # type: ignore[misc]

            digest, size, diff_id, usize = store.blobs.write_gzip_layer(produce)
    except _READ_ERRORS as e:
        raise ImageError(f"cannot read {tarball}: {e}") from None
    layer = Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id, usize)
    record_facts(store, layer)
    config = ImageConfig(platform=platform or Platform.host(),
                         config=RuntimeConfig(env=(DEFAULT_PATH,), cmd=cmd))
    return Image(config).append_layer(layer, f"distill import {tarball.name}")
