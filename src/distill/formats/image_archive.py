"""``distill load``: images from a tar as ``docker save`` writes it, or an OCI layout tar.

Two shapes, often both in one tar:

* Docker's ``manifest.json``: a list of ``{"Config", "RepoTags", "Layers"}``, paths inside
  the tar (``<id>/layer.tar`` and ``<hex>.json`` up to Docker 24, ``blobs/sha256/<hex>``
  since); layers are uncompressed tars (gzip is accepted too), listed by no descriptor;
* an OCI image layout (``index.json``, ``blobs/sha256/``): what ``distill build --output
  type=oci`` writes, ``type=docker`` (both shapes), and Docker 25 and later.

The tar is hostile input. It is read once, as a stream (stdin works), under the limits of
:mod:`distill.limits`; each regular member goes to a private staged file, hashed on the
way. Member names with ``..`` or a leading ``/``, devices and FIFOs, and links whose
target leads out of the tar are refused; links inside it are followed only where
``docker save`` writes them (a layer shared by two images). The images are then read by
the verifying layout importer (``layout_import``): every blob must hash to its digest
and every layer unpack to its config's diff_id. Blobs reach the store only once every
image in the tar checks out.

Layers named by ``manifest.json`` alone (no descriptor) are stored as the tar has them:
an uncompressed ``layer.tar`` becomes an ``application/vnd.oci.image.layer.v1.tar`` blob
whose digest is its diff_id, so the image's manifest digest depends on the layers'
content only, the same however often, wherever, and by whichever distill it is loaded
(a gzip of it would depend on the compressor's version, settings, even its write
sizes), and the blob is the one Docker 25 and later write for the layer
(``blobs/sha256/<diff_id>``).
"""

from __future__ import annotations

import json
import lzma
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from isal import igzip

from distill.errors import DigestMismatchError, DistillError, ImageError
from distill.formats.layers import GZIP_ERRORS
from distill.formats.layout_import import (
    MAX_JSON_BYTES,
    LayoutImporter,
    Staging,
    config_from_json,
    load_json_doc,
    read_capped,
    reported,
)
from distill.formats.stored import save
from distill.image.image import Image
from distill.limits import open_tar
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest, HashingWriter
from distill.oci.reference import normalize_name
from distill.store.store import Store

#: Symbolic links followed, at most, to reach one member.
MAX_LINK_HOPS = 40
_READ_ERRORS: tuple[type[BaseException], ...] = (*GZIP_ERRORS, lzma.LZMAError)


@dataclass(frozen=True)
class LoadedImage:
    image: Image
    names: tuple[str, ...] = ()       # normalised (docker.io/library/app:1), each once


def load_archive(store: Store, stream: BinaryIO, what: str) -> list[LoadedImage]:
    """Every image of the tar ``stream`` (``what`` names it in errors) into the store,
    verified; the caller tags them with their names."""
    with reported(f"{what}: "), Staging(store) as staging:
        archive = _Archive(staging.dir, what)
        try:
            archive.read(stream)
        except tarfile.TarError as e:
            raise ImageError(f"not a tar archive ({e})") from None
        except _READ_ERRORS as e:
            raise ImageError(f"cannot read it: {e}") from None
        loaded = _Loader(store, archive, staging).run()
        staging.commit()
        for item in loaded:
            save(store, item.image)
        return loaded


def image_archive_kind(names: set[str]) -> str | None:
    """What the top-level member ``names`` of a tar say it is: ``docker save`` output,
    an OCI layout, or (None) neither."""
    if "manifest.json" in names and any(n.endswith("/layer.tar") or n.startswith("blobs/")
                                        for n in names):
        return "a docker save archive"
    if "index.json" in names and "oci-layout" in names:
        return "an OCI image layout"
    return None


# -- the tar, read once ---------------------------------------------------------------------

@dataclass(frozen=True)
class _File:
    path: Path          # the staged copy
    digest: Digest      # of its content, as distill hashed it
    size: int


@dataclass
class _Archive:
    """The members of a tar: regular files staged under ``dir``, links as names."""

    dir: Path
    what: str
    files: dict[str, _File] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def read(self, stream: BinaryIO) -> None:
        head = _read_exactly(stream, 6)
        raw = cast(BinaryIO, _Prefixed(head, stream))
        with _decompressed(head, raw) as plain, \
                open_tar(plain, self.what, raw=raw if plain is not raw else None) as tar:
            for member in tar:
                self._member(tar, member)

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member_name(member.name)
        if not name:
            return
        if name in self.files or name in self.symlinks:
            raise ImageError(f"member {name!r} appears twice in the tar")
        if member.isdir():
            self.dirs.add(name)
        elif member.isreg():
            self.files[name] = self._stage(tar, member)
        elif member.issym():
            if member.linkname.startswith("/") or _climbs_out(_parent(name), member.linkname):
                raise ImageError(f"member {name!r} is a symbolic link to "
                                 f"{member.linkname!r}, which leads out of the tar")
            self.symlinks[name] = member.linkname
        elif member.islnk():
            try:
                target: str | None = member_name(member.linkname)
            except ImageError:
                target = None   # absolute, or with '..': not a member
            if target not in self.files:
                raise ImageError(f"member {name!r} is a hard link to {member.linkname!r}, "
                                 "which is not a file earlier in the tar")
            self.files[name] = self.files[target]
        else:
            raise ImageError(f"member {name!r} is a device or FIFO; image archives hold "
                             "only files, directories and links")

    def _stage(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> _File:
        src = tar.extractfile(member)
        assert src is not None  # a regular member
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix="member-")
        with os.fdopen(fd, "wb") as out:
            hw = HashingWriter(out)
            while chunk := src.read(1 << 20):
                hw.write(chunk)
        return _File(Path(tmp), hw.digest(), hw.size)

    def lookup(self, rel: str, what: str, *, follow: bool) -> _File | None:
        """The file ``rel`` names in the tar (None if there is none), following symbolic
        links inside the tar when ``follow``, else refusing one as the file itself."""
        name = member_name(rel)
        if not follow and name in self.symlinks:
            raise ImageError(f"{what} is a symbolic link ({name} -> {self.symlinks[name]})")
        resolved = self._resolve(name, what) if follow else name
        if resolved in self.dirs:
            raise ImageError(f"{what} is a directory, not a file")
        return self.files.get(resolved)

    def _resolve(self, name: str, what: str) -> str:
        """``name`` with every symbolic link on the way replaced, as if the tar were the
        root filesystem; a link climbing above its top is refused."""
        done: list[str] = []
        pending = name.split("/")
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise ImageError(f"{what}: a symbolic link leads out of the tar")
                done.pop()
                continue
            candidate = "/".join([*done, part])
            if candidate in self.symlinks:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise ImageError(f"{what}: too many levels of symbolic links")
                pending = self.symlinks[candidate].split("/") + pending
                continue
            done.append(part)
        return "/".join(done)


def member_name(name: str) -> str:
    """A member's name without ``./`` and repeated or trailing slashes; ImageError for a
    name that is absolute or has a ``..`` component."""
    if name.startswith("/"):
        raise ImageError(f"member {name!r} has an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"member {name!r} has a '..' component")
    return "/".join(parts)


def _parent(name: str) -> str:
    return name.rpartition("/")[0]


def _climbs_out(base: str, target: str) -> bool:
    depth = len([p for p in base.split("/") if p])
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


@contextmanager
def _decompressed(head: bytes, raw: BinaryIO) -> Iterator[Any]:
    """``raw`` itself, or a gzip or xz reader of it (as docker load takes them)."""
    if head[:2] == b"\x1f\x8b":
        with igzip.IGzipFile(fileobj=raw, mode="rb") as gz:
            yield gz
    elif head == b"\xfd7zXZ\x00":
        with lzma.open(raw) as xz:
            yield xz
    else:
        yield raw


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Prefixed:
    """``head`` (already read from ``rest``), then the rest of ``rest``; counts bytes for
    the limits' ratio check."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest
        self._count = 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data = self._head if n is None or n < 0 else self._head[:n]
            self._head = self._head[len(data):]
        else:
            data = self._rest.read(n)
        self._count += len(data)
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self._count

    def readable(self) -> bool:
        return True


# -- the layout view of the tar, for the verifying importer ------------------------------------

class _ArchiveSource:
    def __init__(self, archive: _Archive) -> None:
        self.archive = archive

    def read_json(self, rel: str, what: str) -> bytes | None:
        found = self.archive.lookup(rel, what, follow=False)
        if found is None:
            return None
        if found.size > MAX_JSON_BYTES:
            raise ImageError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
        with open(found.path, "rb") as f:
            return read_capped(f, what)

    def stage(self, rel: str, what: str, desc: Descriptor, staging: Staging) -> None:
        found = self.archive.lookup(rel, what, follow=False)
        if found is None:
            raise FileNotFoundError(rel)
        if found.size != desc.size:
            raise ImageError(f"{what} is {found.size} bytes, but its descriptor says "
                             f"{desc.size}")
        if found.digest != desc.digest:
            raise DigestMismatchError(f"content hashes to {found.digest}, "
                                      f"expected {desc.digest}")
        staging.add(found.path, desc.digest)


# -- images -----------------------------------------------------------------------------------

class _Loader:
    def __init__(self, store: Store, archive: _Archive, staging: Staging) -> None:
        self.archive = archive
        self.source = _ArchiveSource(archive)
        self.staging = staging
        self.importer = LayoutImporter(store, self.source, staging)
        self.images: dict[Digest, tuple[Image, list[str]]] = {}

    def run(self) -> list[LoadedImage]:
        index = self.source.read_json("index.json", "index.json")
        docker = self.source.read_json("manifest.json", "manifest.json")
        if index is None and docker is None:
            raise ImageError("neither docker save output (no manifest.json) nor an OCI "
                             "image layout (no index.json)",
                             hint="a root filesystem tarball is imported with "
                                  "'distill import TARBALL NAME'")
        by_config: dict[Digest, Digest] = {}   # the tar's config digest -> image
        if index is not None:
            for desc in self.importer.manifests(load_json_doc(index, "index.json")):
                image, config = self.importer.image_and_config(self.importer.resolve(desc))
                by_config[config] = self._add(image, _index_names(desc))
        if docker is not None:
            for i, entry in enumerate(_docker_manifest(docker)):
                what = f"manifest.json[{i}]"
                config_file = self._file(entry["Config"], f"{what}: Config {entry['Config']!r}")
                known = by_config.get(config_file.digest)
                if known is not None:
                    self.images[known][1].extend(entry["RepoTags"])
                else:
                    image = self._legacy_image(entry, config_file, what)
                    by_config[config_file.digest] = self._add(image, entry["RepoTags"])
        return [LoadedImage(image, _normalised(names)) for image, names in self.images.values()]

    def _add(self, image: Image, names: list[str]) -> Digest:
        entry = self.images.setdefault(image.digest, (image, []))
        entry[1].extend(names)
        return image.digest

    def _file(self, rel: str, what: str) -> _File:
        found = self.archive.lookup(rel, what, follow=True)
        if found is None:
            raise ImageError(f"{what} is not in the tar")
        parts = member_name(rel).split("/")
        # a file named for its digest must have that digest, as every OCI blob
        if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and found.digest.hex != parts[2]:
            raise DigestMismatchError(f"{what}: content hashes to {found.digest}, not to the "
                                      "digest its name says")
        return found

    def _legacy_image(self, entry: dict[str, Any], config_file: _File, what: str) -> Image:
        """An image ``manifest.json`` alone describes: layers stored as the tar has them."""
        if config_file.size > MAX_JSON_BYTES:
            raise ImageError(f"{what}: its config is larger than {MAX_JSON_BYTES} bytes")
        label = f"config {config_file.digest}"
        config = config_from_json(load_json_doc(config_file.path.read_bytes(), label), label)
        paths: list[str] = entry["Layers"]
        if len(paths) != len(config.diff_ids):
            raise ImageError(f"{what} lists {len(paths)} layers but its config has "
                             f"{len(config.diff_ids)} diff_ids",
                             hint="every layer needs exactly one diff_id, in order")
        layers = []
        for rel, diff_id in zip(paths, config.diff_ids):
            found = self._file(rel, f"{what}: layer {rel!r}")
            desc = Descriptor(_sniff_layer(found.path, rel), found.digest, found.size)
            self.staging.add(found.path, found.digest)
            layers.append(self.importer.layer(desc, diff_id))
        return Image(config, tuple(layers))


def _sniff_layer(path: Path, rel: str) -> str:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return mt.OCI_LAYER_GZIP
    if magic in (b"\x28\xb5\x2f\xfd",) or magic[:3] == b"BZh" or magic == b"\xfd7zX":
        raise ImageError(f"layer {rel!r} is compressed in a way distill does not read",
                         hint="distill reads gzip and uncompressed tar layers")
    return mt.OCI_LAYER_TAR


def _docker_manifest(data: bytes) -> Iterator[dict[str, Any]]:
    """The entries of Docker's manifest.json, each checked for shape."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"manifest.json is not valid JSON: {e}") from None
    except RecursionError:
        raise ImageError("manifest.json nests too deeply to be read") from None
    if not isinstance(doc, list):
        raise ImageError("manifest.json is not a JSON list")
    for i, entry in enumerate(doc):
        what = f"manifest.json[{i}]"
        if not isinstance(entry, dict):
            raise ImageError(f"{what} is not a JSON object")
        config, tags, layers = entry.get("Config"), entry.get("RepoTags"), entry.get("Layers")
        if not isinstance(config, str) or not config:
            raise ImageError(f"{what}: 'Config' is not a path")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(t, str) for t in tags)):
            raise ImageError(f"{what}: 'RepoTags' is not a list of names")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ImageError(f"{what}: 'Layers' is not a list of paths")
        yield {"Config": config, "RepoTags": list(tags or []), "Layers": layers}


def _index_names(desc: Descriptor) -> list[str]:
    """The name an index.json entry gives its image: containerd's annotation (buildx,
    Docker), else ``ref.name`` when it is a whole name (``app:1``), not a bare tag."""
    name = desc.annotations.get(mt.ANNOTATION_IMAGE_NAME)
    if name:
        return [name]
    ref = desc.annotations.get(mt.ANNOTATION_REF_NAME, "")
    return [ref] if ":" in ref or "/" in ref else []


def _normalised(names: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        try:
            full = normalize_name(name)
        except DistillError as e:
            raise ImageError(f"image name {name[:200]!r} in the tar: {e.message}") from None
        if full not in out:
            out.append(full)
    return tuple(out)
