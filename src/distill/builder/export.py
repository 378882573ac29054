"""Outputs, spelled as ``docker buildx build --output``: oci (tar or dir), docker, local."""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from distill.builder.localout import export_rootfs
from distill.builder.rootfs import RootfsManager
from distill.errors import ImageError, UsageError
from distill.formats.oci_layout import Tagged, write_layout_dir, write_layout_tar
from distill.formats.stored import save
from distill.image.image import Image
from distill.oci.reference import normalize_name
from distill.store.blobs import Compression
from distill.store.store import Store

#: What --output type= takes (registry = image with push=true, as in buildx).
OUTPUT_TYPES = ("oci", "docker", "local", "image", "registry")


@dataclass(frozen=True)
class OutputSpec:
    type: str
    dest: str = ""
    tar: bool = True
    devices: bool = False    # type=local: create device nodes
    setuid: bool = False     # type=local: keep setuid/setgid bits
    names: tuple[str, ...] = ()   # name=: the image's names (else -t's)
    push: bool = False            # type=image,push=true (type=registry)
    #: compression= / compression-level= (None: distill's default, gzip level 1);
    #: force-compression=true: base layers too, not only those the build made
    compression: Compression | None = None
    force_compression: bool = False

    @classmethod
    def parse(cls, spec: str) -> OutputSpec:
        """buildx's CSV syntax: ``type=image,"name=a:1,b:1",push=true``."""
        if "=" not in spec:
            return cls("local", spec)  # `-o DIR` is type=local,dest=DIR, as in buildx
        fields: dict[str, str] = {}
        try:
            parts = next(csv.reader([spec]))
        except (csv.Error, StopIteration):
            raise UsageError(f"invalid --output {spec!r}") from None
        for part in parts:
            key, eq, value = part.partition("=")
            if not eq:
                raise UsageError(f"invalid --output field {part!r} (expected key=value)")
            fields[key.strip()] = value.strip()
        kind = fields.pop("type", "local")
        if kind not in OUTPUT_TYPES:
            raise UsageError(f"unsupported output type {kind!r}",
                             hint="distill writes type=" + ", type=".join(OUTPUT_TYPES))
        names = tuple(normalize_name(n.strip()) for n in fields.pop("name", "").split(",")
                      if n.strip())
        push = kind == "registry" or _bool(fields.pop("push", "false"), "push")
        compression, force = _compression(fields, kind)
        if kind in ("image", "registry"):
            if fields:
                raise UsageError(f"unsupported --output options for type={kind}: "
                                 f"{', '.join(sorted(fields))}")
            return cls("image", names=names, push=push, compression=compression,
                       force_compression=force)
        if push:
            raise UsageError(f"--output type={kind} cannot push",
                             hint="use type=image,push=true or type=registry")
        dest = fields.pop("dest", "")
        if not dest:
            raise UsageError(f"--output type={kind} needs dest=PATH")
        tar = _bool(fields.pop("tar", "true"), "tar")
        local = {key: _bool(fields.pop(key), key) for key in ("devices", "setuid")
                 if key in fields}
        if local and kind != "local":
            raise UsageError(f"--output {', '.join(sorted(local))}= only applies to type=local")
        if names and kind == "local":
            raise UsageError("--output type=local has no name=")
        if fields:
            raise UsageError(f"unsupported --output options: {', '.join(sorted(fields))}")
        return cls(kind, dest, tar, names=names, compression=compression,
                   force_compression=force, **local)

    @property
    def is_tar(self) -> bool:
        return self.type != "local" and self.tar

    def check(self) -> None:
        """Fail before the build, not after it, when dest cannot be written."""
        if self.type == "image":
            return
        if self.dest == "-":
            if not self.is_tar:
                raise UsageError(f"--output type={self.type} cannot be written to stdout")
            return
        dest = Path(self.dest)
        if self.is_tar and dest.is_dir():
            raise UsageError(f"--output dest={self.dest} is a directory; "
                             f"type={self.type} writes a tar file")
        if not self.is_tar and dest.exists() and not dest.is_dir():
            raise UsageError(f"--output dest={self.dest} exists and is not a directory")


def _compression(fields: dict[str, str], kind: str) -> tuple[Compression | None, bool]:
    """compression=, compression-level=, force-compression= (and oci-mediatypes=, which
    changes nothing here: distill's layers are always OCI's), as buildx takes them."""
    name = fields.pop("compression", None)
    level_text = fields.pop("compression-level", None)
    force = _bool(fields.pop("force-compression", "false"), "force-compression")
    if "oci-mediatypes" in fields:
        _bool(fields.pop("oci-mediatypes"), "oci-mediatypes")
    if name is None and level_text is None and not force:
        return None, False
    if kind == "local":
        raise UsageError("--output type=local writes files, not compressed layers")
    level = None
    if level_text is not None:
        try:
            level = int(level_text)
        except ValueError:
            raise UsageError(f"--output compression-level={level_text!r}: expected a "
                             "number") from None
    return Compression(name or "gzip", level), force


def _bool(value: str, key: str) -> bool:
    low = value.lower()
    if low in ("true", "1", "t", "yes"):
        return True
    if low in ("false", "0", "f", "no"):
        return False
    raise UsageError(f"--output {key}={value!r}: expected true or false")


def export(store: Store, image: Image, spec: OutputSpec,
           names: tuple[str, ...]) -> list[str]:
    """Write the output; returns warnings for the user (what type=local left out)."""
    save(store, image)
    try:
        return _export(store, image, spec, names)
    except OSError as e:
        raise ImageError(f"cannot write --output dest={spec.dest}: {e.strerror or e}") from None


def _export(store: Store, image: Image, spec: OutputSpec, names: tuple[str, ...]) -> list[str]:
    names = spec.names or names
    if spec.type == "image":
        tag_in_store(store, image, names)
        return []
    tagged = [Tagged(image, names)]
    if spec.type == "local":
        with RootfsManager(store).mounted(image) as mount:
            report = export_rootfs(mount.merged, Path(spec.dest), devices=spec.devices,
                                   setid=spec.setuid)
        return report.warnings()
    if spec.type == "oci" and not spec.tar:
        write_layout_dir(store, tagged, Path(spec.dest))
        return []
    docker = spec.type == "docker"
    if docker and not names:
        tagged = [Tagged(image, ())]
    if spec.dest == "-":
        write_layout_tar(store, tagged, sys.stdout.buffer, docker_manifest=docker)
        return []
    dest = Path(spec.dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.distill-tmp")
    try:
        with open(tmp, "wb") as out:
            write_layout_tar(store, tagged, out, docker_manifest=docker)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return []


def tag_in_store(store: Store, image: Image, names: tuple[str, ...]) -> None:
    desc = save(store, image)
    for name in names:
        store.names.tag(normalize_name(name), desc)
