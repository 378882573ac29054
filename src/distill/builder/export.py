"""Outputs, spelled as ``docker buildx build --output``.

Each ``type=`` is one entry of :data:`OUTPUT_TYPES`: the options it takes and the
function that writes it. A new output type is a new entry there and nothing else:
parsing, the checks made before the build and the error messages follow from it.

* ``oci``: an OCI image layout, as a tar (``dest=FILE`` or ``-``) or, with
  ``tar=false``, as a directory.
* ``docker``: the same tar with ``manifest.json``, for ``docker load``.
* ``local``: the image's files in a directory (``devices=``, ``setuid=`` opt in).
* ``tar``: the image's files as one tar (``dest=FILE`` or ``-``; ``-o -`` too).
* ``image``: tagged in distill's store; ``push=true`` also pushes every name.
* ``registry``: ``image`` with ``push=true``, as in buildx.

Referrers (``distill build --sbom``: an SBOM attached to the image) go where an output
carries them: into an OCI layout beside the image (``referrers`` in the table) and to
the registry after a pushed image. Any other output refuses them before the build.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from distill import phases
from distill.builder.localout import export_rootfs
from distill.builder.rootfs import RootfsManager
from distill.errors import UsageError, os_failure
from distill.formats.oci_layout import Tagged, write_layout_dir, write_layout_tar
from distill.formats.referrers import Referrer
from distill.formats.stored import save, tag_in_store
from distill.image.image import Image
from distill.oci.reference import normalize_name
from distill.sandbox import rootless, write_layer_from_upper
from distill.store.blobs import Compression
from distill.store.store import Store

if TYPE_CHECKING:
    from distill.registry.registries import Registries


@dataclass(frozen=True)
class OutputSpec:
    """One parsed ``--output``: its type and the options it was given."""

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
        if spec == "-":
            return cls("tar", "-")     # `-o -` is type=tar,dest=- (stdout), as in buildx
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
        output = OUTPUT_TYPES.get(kind)
        if output is None:
            raise UsageError(f"unsupported output type {kind!r}",
                             hint="distill writes type=" + ", type=".join(OUTPUT_TYPES))
        return output.parse(kind, fields)

    @property
    def carries_referrers(self) -> bool:
        """The output holds artifacts attached to the image (an SBOM): an OCI layout, or
        a registry the image is pushed to."""
        return OUTPUT_TYPES[self.type].referrers or self.push

    @property
    def is_tar(self) -> bool:
        """dest is one file (or "-", stdout), not a directory."""
        return OUTPUT_TYPES[self.type].dest == "file" and self.tar

    def check(self) -> None:
        """Fail before the build, not after it, when dest is the wrong kind of thing."""
        if OUTPUT_TYPES[self.type].dest is None:
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


@dataclass(frozen=True)
class Delivery:
    """What an output writes and what it may use to write it."""

    store: Store
    image: Image
    names: tuple[str, ...]             # name= if given, else the build's -t names
    registries: Registries | None = None
    jobs: int = 4
    log: Callable[[str], None] = field(default=lambda line: None)
    referrers: tuple[Referrer, ...] = ()   # attached to the image (an SBOM)


@dataclass(frozen=True)
class OutputType:
    """One ``--output type=``: which options it takes and how it is written.

    ``dest``: what ``dest=`` names: "file" (a file, or "-" for stdout), "dir", or None
    (no dest); ``tar_option``: ``tar=false`` makes a "file" output a directory;
    ``layers``: it writes image layers, so ``compression=`` and ``name=`` apply;
    ``options``: its own boolean options (fields of :class:`OutputSpec`);
    ``push``: ``push=`` is allowed (``always``: it is implied);
    ``referrers``: it writes the image's referrers beside it (a pushed image always does).
    ``write`` returns warnings for the user.
    """

    write: Callable[[Delivery, OutputSpec], list[str]]
    dest: str | None = "file"
    tar_option: bool = False
    layers: bool = True
    options: tuple[str, ...] = ()
    push: bool = False
    always_push: bool = False
    referrers: bool = False

    def parse(self, kind: str, fields: dict[str, str]) -> OutputSpec:
        names = tuple(normalize_name(n.strip()) for n in fields.pop("name", "").split(",")
                      if n.strip())
        if names and not self.layers:
            raise UsageError(f"--output type={kind} has no name=")
        push = self.always_push or _bool(fields.pop("push", "false"), "push")
        if push and not self.push:
            raise UsageError(f"--output type={kind} cannot push",
                             hint="use type=image,push=true or type=registry")
        compression, force = _compression(fields, kind, self.layers)
        dest = fields.pop("dest", "") if self.dest is not None else ""
        if self.dest is not None and not dest:
            raise UsageError(f"--output type={kind} needs dest=PATH")
        tar = _bool(fields.pop("tar", "true"), "tar") if self.tar_option else True
        own = {key: _bool(fields.pop(key), key) for key in self.options if key in fields}
        if own.get("devices") and rootless.active():   # refused before anything is built
            raise UsageError(f"--output type={kind},devices=true needs root: a rootless build "
                             "may not create device nodes")
        for key in sorted(fields):
            takers = [f"type={name}" for name, t in OUTPUT_TYPES.items()
                      if key in t.options or (key == "tar" and t.tar_option)
                      or (key == "dest" and t.dest is not None)]
            if takers:
                raise UsageError(f"--output {key}= only applies to {', '.join(takers)}")
        if fields:
            raise UsageError(f"unsupported --output options for type={kind}: "
                             f"{', '.join(sorted(fields))}")
        return OutputSpec("image" if kind == "registry" else kind, dest, tar, names=names,
                          push=push, compression=compression, force_compression=force,
                          **own)


def _compression(fields: dict[str, str], kind: str,
                 layers: bool) -> tuple[Compression | None, bool]:
    """compression=, compression-level=, force-compression= (and oci-mediatypes=, which
    changes nothing here: distill's layers are always OCI's), as buildx takes them."""
    name = fields.pop("compression", None)
    level_text = fields.pop("compression-level", None)
    force = _bool(fields.pop("force-compression", "false"), "force-compression")
    if "oci-mediatypes" in fields:
        _bool(fields.pop("oci-mediatypes"), "oci-mediatypes")
    if name is None and level_text is None and not force:
        return None, False
    if not layers:
        raise UsageError(f"--output type={kind} writes files, not compressed layers")
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


# -- the writers ------------------------------------------------------------------------

def _write_image(out: Delivery, spec: OutputSpec) -> list[str]:
    tag_in_store(out.store, out.image, out.names)
    if spec.push:
        if not out.names:
            raise UsageError("pushing needs a name for the image", hint="-t REGISTRY/REPO:TAG")
        from distill.registry.push import push_names
        from distill.registry.registries import Registries

        registries = out.registries or Registries()
        for pushed in push_names(out.store, registries, out.image.digest, out.names,
                                 jobs=out.jobs):
            out.log(f"pushed {pushed.reference.familiar}@{pushed.manifest.digest}")
        if out.referrers:
            from distill.registry.push import push_referrers

            for pushed in push_referrers(out.store, registries, out.names, out.referrers,
                                         jobs=out.jobs):
                out.log(f"pushed {pushed.reference.familiar}@{pushed.manifest.digest} "
                        f"(referrer of {out.image.digest})")
    return []


def _write_local(out: Delivery, spec: OutputSpec) -> list[str]:
    owners = not rootless.active()   # rootless: the files are the user's own
    with RootfsManager(out.store).mounted(out.image) as mount:
        report = export_rootfs(mount.merged, Path(spec.dest), devices=spec.devices,
                               setid=spec.setuid, owners=owners)
    return report.warnings()


def _write_oci(out: Delivery, spec: OutputSpec) -> list[str]:
    if not spec.tar:
        write_layout_dir(out.store, [Tagged(out.image, out.names, out.referrers)],
                         Path(spec.dest))
        return []
    _write_tar(out, spec, docker_manifest=False)
    return []


def _write_docker(out: Delivery, spec: OutputSpec) -> list[str]:
    _write_tar(out, spec, docker_manifest=True)
    return []


def _write_tar(out: Delivery, spec: OutputSpec, *, docker_manifest: bool) -> None:
    tagged = [Tagged(out.image, out.names, out.referrers)]
    _write_file(spec.dest, lambda f: write_layout_tar(out.store, tagged, f,
                                                      docker_manifest=docker_manifest))


def _write_rootfs_tar(out: Delivery, spec: OutputSpec) -> list[str]:
    """type=tar: the image's root filesystem as one tar, as buildx's tar exporter writes
    it (what type=local writes, in a tar; device nodes and setuid bits kept as they are,
    since a tar makes nothing on the host)."""
    with RootfsManager(out.store).mounted(out.image) as mount:
        _write_file(spec.dest, lambda f: write_layer_from_upper(mount.merged, f))
    return []


def _write_file(dest_name: str, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into ``dest_name`` ("-": stdout), which appears only once whole."""
    if dest_name == "-":
        write(sys.stdout.buffer)
        return
    dest = Path(dest_name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.distill-tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


#: The outputs that carry an image's referrers (an SBOM), for error messages.
REFERRER_OUTPUTS = "--output type=oci or a push (--push, type=registry, type=image,push=true)"

#: Every ``--output type=`` distill writes.
OUTPUT_TYPES: dict[str, OutputType] = {
    "oci": OutputType(_write_oci, tar_option=True, referrers=True),
    "docker": OutputType(_write_docker),
    "local": OutputType(_write_local, dest="dir", layers=False, options=("devices", "setuid")),
    "tar": OutputType(_write_rootfs_tar, layers=False),
    "image": OutputType(_write_image, dest=None, push=True),
    "registry": OutputType(_write_image, dest=None, push=True, always_push=True),
}


def export(store: Store, image: Image, spec: OutputSpec, names: tuple[str, ...], *,
           registries: Registries | None = None, jobs: int = 4,
           log: Callable[[str], None] = lambda line: None,
           referrers: tuple[Referrer, ...] = ()) -> list[str]:
    """Write the output (``names``: the build's -t, used unless the output has name=),
    with ``referrers`` where it carries them; returns warnings for the user (what
    type=local left out). Pushes are logged."""
    if referrers and not spec.carries_referrers:
        raise UsageError(f"--output type={spec.type} cannot carry an attached artifact",
                         hint=REFERRER_OUTPUTS)
    save(store, image)
    phases.enter("output")
    out = Delivery(store, image, spec.names or names, registries, jobs, log, referrers)
    try:
        return OUTPUT_TYPES[spec.type].write(out, spec)
    except OSError as e:
        raise os_failure(e, "cannot write the output", spec.dest, store=False) from None
