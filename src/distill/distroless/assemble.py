"""Packages -> one deterministic layer -> an Image. Nothing from a package is run.

Each package's data.tar is unpacked (safely: no '..', nothing through symlinks) into
one directory, the distroless files are added, and the directory is written as a
layer with sorted entries and mtimes clamped to the archive's Release date, so a
lock file always gives the same digest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC

from distill.debian.archive import Archive
from distill.debian.deb import DebFile
from distill.debian.lock import Lock
from distill.debian.resolve import resolve
from distill.distroless.files import add_distroless_files, write_status
from distill.distroless.presets import EXCLUDE, NONROOT_UID, Selection, Variant
from distill.errors import ArchiveError
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig, RuntimeConfig
from distill.oci.descriptor import Descriptor
from distill.oci.platform import Platform
from distill.sandbox import extract_layer, write_layer_from_upper
from distill.store.store import LayerFacts, Store

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13", "bullseye": "11"}


def lock_selection(archive: Archive, selection: Selection) -> Lock:
    """Resolve a selection against the (verified) archive into a lock."""
    release = archive.release()
    records = resolve(archive.packages(), selection.wanted, arch=archive.arch, exclude=EXCLUDE)
    return Lock(mirror=archive.mirror, suite=archive.suite, arch=archive.arch,
                release_date=release.date, date_epoch=release.date_epoch,
                packages=tuple(records))


def runtime_config(variant: Variant, debug_path: bool) -> RuntimeConfig:
    env = [DEFAULT_PATH + (":/busybox" if debug_path else ""),
           "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]
    return RuntimeConfig(
        env=tuple(env),
        user=str(NONROOT_UID) if variant.nonroot else "",
        working_dir="/home/nonroot" if variant.nonroot else "",
        entrypoint=("/busybox/sh",) if variant.debug else None,
    )


def assemble(store: Store, archive: Archive, lock: Lock, variant: Variant,
             log: Callable[[str], None] = lambda s: None) -> Image:
    """Fetch (and verify) every locked package and assemble the image."""
    debs = []
    for rec in lock.packages:
        log(f"fetch {rec.name} {rec.version}")
        debs.append((rec, archive.fetch_deb(rec)))
    suite = lock.suite.split("-")[0]
    with store.blobs.temp_dir("distroless-") as tmp:
        root = tmp / "rootfs"
        root.mkdir()
        os.chmod(root, 0o755)
        for rec, path in debs:
            with DebFile(path) as deb:
                try:
                    extract_layer(deb.data_tar(), root)
                except Exception as e:
                    if isinstance(e, ArchiveError):
                        raise
                    raise ArchiveError(f"{rec.name} {rec.version}: cannot unpack: {e}") from e
                write_status(root, rec.name, deb.control(), deb.control_member("md5sums"))
        add_distroless_files(root, version_id=DEBIAN_VERSIONS.get(suite, suite),
                             codename=suite, debug=variant.debug)
        digest, size, diff_id, usize = store.blobs.write_gzip_layer(
            lambda out: write_layer_from_upper(root, out, mtime_clamp=lock.date_epoch))
    layer = Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id, usize)
    store.record_layer(digest, LayerFacts(diff_id, usize))
    names = " ".join(rec.name for rec in lock.packages)
    config = ImageConfig(platform=Platform("linux", lock.arch),
                         config=runtime_config(variant, variant.debug))
    image = Image(config).append_layer(layer, f"distill base: {names}")
    return image.with_created(_rfc3339(lock.date_epoch))


def _rfc3339(epoch: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
