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
from distill.debian.relations import version
from distill.debian.resolve import resolve
from distill.debian.sources import Sources
from distill.distroless.files import (
    add_distroless_files,
    copy_kept,
    link,
    write_file,
    write_status,
)
from distill.distroless.keystore import truststore_from_bundle
from distill.distroless.presets import (
    CERTIFICATES_PACKAGE,
    EXCLUDE,
    NONROOT_UID,
    Preset,
    Selection,
    Variant,
)
from distill.errors import ArchiveError, DistillError
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig, RuntimeConfig
from distill.oci.descriptor import Descriptor
from distill.oci.platform import Platform
from distill.sandbox import extract_layer, write_layer_from_upper
from distill.store.store import LayerFacts, Store

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13", "bullseye": "11"}


JAVA_TRUSTSTORE = "etc/ssl/certs/java/cacerts"


def lock_selection(sources: Sources, selection: Selection) -> Lock:
    """Resolve a selection against the (verified) archives into a lock: the preset's
    packages exactly as listed, the others with their dependencies; of each, the newest
    version any archive has (a security update over the release's own)."""
    index = sources.packages()
    exact = resolve(index, selection.exact, arch=sources.arch, with_deps=False)
    given = {rec.name for rec in exact}
    # What the user names with --package is installed even if distroless leaves it out
    # by default (openssl, dash...): EXCLUDE only stops dependencies from pulling it in.
    asked = {spec.partition("=")[0].strip() for spec in selection.extra}
    followed = resolve(index, selection.with_dependencies, arch=sources.arch,
                       exclude=(EXCLUDE | given | set(selection.preset.exclude)) - asked)
    chosen = {rec.name: rec for rec in [*exact, *followed]}
    return sources.lock(chosen.values())


def runtime_config(variant: Variant, preset: Preset, lock: Lock) -> RuntimeConfig:
    """Google's config for the preset and variant: PATH (with /busybox in :debug),
    SSL_CERT_FILE, the preset's variables; user 0 or 65532; the preset's entrypoint,
    else /busybox/sh in :debug."""
    env = [DEFAULT_PATH + (":/busybox" if variant.debug else ""),
           "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", *preset.env]
    if preset.version_env is not None:
        name, package = preset.version_env
        versions = {rec.name: rec.version for rec in lock.packages}
        if package in versions:
            # 17.0.18+8-1~deb12u1 -> 17.0.18, as Google's JAVA_VERSION
            upstream = version(versions[package]).upstream_version or ""
            env.append(f"{name}={upstream.partition('+')[0]}")
    entrypoint = preset.entrypoint or (("/busybox/sh",) if variant.debug else None)
    return RuntimeConfig(
        env=tuple(env),
        user=str(NONROOT_UID) if variant.nonroot else "0",
        working_dir="/home/nonroot" if variant.nonroot else "/",
        entrypoint=entrypoint,
    )


def assemble(store: Store, archive: Archive, lock: Lock, selection: Selection,
             log: Callable[[str], None] = lambda s: None) -> Image:
    """Fetch (and verify) every locked package and assemble the image."""
    variant, preset = selection.variant, selection.preset
    debs = []
    for rec in lock.packages:
        log(f"fetch {rec.name} {rec.version}")
        debs.append((rec, archive.fetch_deb(rec, lock.mirror_for(rec.name))))
    suite = lock.suite.split("-")[0]
    with store.blobs.temp_dir("distroless-") as tmp:
        root, aside = tmp / "rootfs", tmp / "aside"   # aside: packages taken in part
        for directory in (root, aside):
            directory.mkdir()
            os.chmod(directory, 0o755)
        partial = selection.partial
        for rec, path in debs:
            into = aside / rec.name if rec.name in partial else root
            into.mkdir(exist_ok=True)
            with DebFile(path) as deb:
                try:
                    extract_layer(deb.data_tar(), into)
                except Exception as e:
                    if isinstance(e, ArchiveError):
                        raise
                    hint = e.hint if isinstance(e, DistillError) else None
                    raise ArchiveError(f"{rec.name} {rec.version}: cannot unpack: {e}",
                                       hint=hint) from e
                write_status(root, rec.name, deb.control(), deb.control_member("md5sums"))
            if rec.name in partial:
                copy_kept(into, root, partial[rec.name])
        certificates = aside / CERTIFICATES_PACKAGE
        certificates.mkdir(exist_ok=True)
        bundle = add_distroless_files(root, version_id=DEBIAN_VERSIONS.get(suite, suite),
                                      codename=suite, debug=variant.debug,
                                      certificates=certificates)
        for name, target in preset.links:
            link(root, name.format(arch=lock.arch), target.format(arch=lock.arch))
        if preset.java_keystore:
            write_file(root, JAVA_TRUSTSTORE,
                       truststore_from_bundle(bundle or b"", created_ms=lock.date_epoch * 1000))
        digest, size, diff_id, usize = store.blobs.write_gzip_layer(
            lambda out: write_layer_from_upper(root, out, mtime_clamp=lock.date_epoch))
    layer = Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id, usize)
    store.record_layer(digest, LayerFacts(diff_id, usize))
    names = " ".join(rec.name for rec in lock.packages)
    config = ImageConfig(platform=Platform("linux", lock.arch),
                         config=runtime_config(variant, preset, lock))
    image = Image(config).append_layer(layer, f"distill base: {names}")
    return image.with_created(_rfc3339(lock.date_epoch))


def _rfc3339(epoch: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
