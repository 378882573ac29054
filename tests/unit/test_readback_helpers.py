"""The read-back helpers (tests/helpers/readback.py) and tests.helpers.oci_validate.validate_layout.

tree_snapshot is checked on a hand-made tree; validate_layout on hand-made layouts, good
and broken; and, where skopeo and umoci are installed, all of them on a layout umoci made.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from distill.errors import DigestMismatchError, ImageError
from tests.helpers.oci_validate import validate_layout
from tests.helpers.readback import skopeo_copy, skopeo_inspect, tree_snapshot, umoci_unpack

IS_ROOT = os.geteuid() == 0
HAVE_TOOLS = shutil.which("skopeo") is not None and shutil.which("umoci") is not None
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# --- tree_snapshot -------------------------------------------------------------------------


def _make_tree(root: Path) -> None:
    """A small tree with one of everything a snapshot must tell apart."""
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin" / "tool", 0o4755)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "empty").write_bytes(b"")
    os.chmod(root / "empty", 0o600)
    os.link(root / "bin" / "tool", root / "bin" / "tool-alias")
    os.symlink("bin/tool", root / "link")
    os.symlink("/nowhere", root / "dangling")
    os.symlink("bin", root / "bindir")  # a symlink to a directory is not descended
    os.mkfifo(root / "fifo")
    os.chmod(root / "fifo", 0o644)
    os.chmod(root, 0o755)
    os.chmod(root / "bin", 0o755)


def test_tree_snapshot_describes_every_path(tmp_path: Path) -> None:
    _make_tree(tmp_path)
    snap = tree_snapshot(tmp_path)
    assert sorted(snap) == [
        ".", "bin", "bin/tool", "bin/tool-alias", "bindir", "dangling", "empty", "fifo",
        "link", "tmp",
    ]  # fmt: skip
    uid, gid = os.getuid(), os.getgid()
    assert snap["."] == _entry("dir", 0o755, uid, gid)
    assert snap["tmp"]["mode"] == 0o1777
    tool_sha = hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    assert snap["bin/tool"] == _entry(
        "file", 0o4755, uid, gid, size=10, sha256=tool_sha, hardlink="bin/tool"
    )
    assert snap["bin/tool-alias"] == snap["bin/tool"]
    assert snap["empty"] == _entry("file", 0o600, uid, gid, sha256=hashlib.sha256().hexdigest())
    assert snap["link"] == _entry("symlink", 0o777, uid, gid, size=8, target="bin/tool")
    assert snap["dangling"]["target"] == "/nowhere"
    assert snap["bindir"]["type"] == "symlink"
    assert snap["fifo"] == _entry("fifo", 0o644, uid, gid)


def test_tree_snapshot_owners_and_devices(tmp_path: Path) -> None:
    (tmp_path / "owned").write_bytes(b"x")
    os.chown(tmp_path / "owned", 1234, 5678)
    os.symlink("owned", tmp_path / "owned-link")
    os.lchown(tmp_path / "owned-link", 42, 43)
    os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(tmp_path / "null", 0o666)
    snap = tree_snapshot(tmp_path)
    assert (snap["owned"]["uid"], snap["owned"]["gid"]) == (1234, 5678)
    assert (snap["owned-link"]["uid"], snap["owned-link"]["gid"]) == (42, 43)
    assert snap["null"] == _entry("char", 0o666, 0, 0, rdev="1:3")


def test_tree_snapshots_compare_equal_across_copies(tmp_path: Path) -> None:
    """Hardlink groups are named by path, not inode, so equal trees give equal snapshots."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _make_tree(tmp_path / name)
    assert tree_snapshot(tmp_path / "a") == tree_snapshot(tmp_path / "b")
    os.chmod(tmp_path / "b" / "tmp", 0o777)
    assert tree_snapshot(tmp_path / "a") != tree_snapshot(tmp_path / "b")


def _entry(kind: str, mode: int, uid: int, gid: int, **extra: Any) -> dict[str, Any]:
    """A snapshot entry with the defaults of its kind."""
    base = {
        "type": kind, "mode": mode, "uid": uid, "gid": gid, "size": 0, "sha256": None,
        "target": None, "rdev": None, "hardlink": None,
    }  # fmt: skip
    return base | extra


# --- validate_layout on hand-made layouts --------------------------------------------------


class LayoutWriter:
    """Writes blobs and index.json of an OCI layout, returning descriptors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def json_blob(self, doc: dict[str, Any], media_type: str) -> dict[str, Any]:
        return self.blob(json.dumps(doc).encode(), media_type)

    def image(self, files: dict[str, bytes]) -> dict[str, Any]:
        """A one-layer image; returns its manifest descriptor."""
        tar_bytes = _tar(files)
        layer = self.blob(gzip.compress(tar_bytes, mtime=0), LAYER)
        config = self.json_blob(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": ["PATH=/bin"]},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()],
                },
            },
            CONFIG,
        )
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer]}
        return self.json_blob(manifest, MANIFEST)

    def index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}
        (self.root / "index.json").write_text(json.dumps(doc))

    def path(self, desc: dict[str, Any]) -> Path:
        digest: str = desc["digest"]
        return self.root / "blobs" / "sha256" / digest.split(":")[1]


def _tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of regular files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_validate_layout_accepts_nested_indexes(tmp_path: Path) -> None:
    layout = LayoutWriter(tmp_path)
    inner = layout.json_blob(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": [layout.image({"a": b"1"})]}, INDEX
    )
    layout.index([inner, layout.image({"b": b"2"})])
    validate_layout(tmp_path)


def test_validate_layout_rejects_a_changed_layer(tmp_path: Path) -> None:
    layout = LayoutWriter(tmp_path)
    manifest = layout.image({"a": b"1"})
    layout.index([manifest])
    layer = json.loads(layout.path(manifest).read_bytes())["layers"][0]
    data = bytearray(layout.path(layer).read_bytes())
    data[-1] ^= 0xFF
    layout.path(layer).write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        validate_layout(tmp_path)


def test_validate_layout_rejects_wrong_size_and_missing_blobs(tmp_path: Path) -> None:
    layout = LayoutWriter(tmp_path)
    manifest = layout.image({"a": b"1"})
    layout.index([dict(manifest, size=manifest["size"] + 1)])
    with pytest.raises(ImageError, match="bytes, not"):
        validate_layout(tmp_path)
    layout.index([manifest])
    layout.path(manifest).unlink()
    with pytest.raises(ImageError, match="missing"):
        validate_layout(tmp_path)


def test_validate_layout_rejects_invalid_documents(tmp_path: Path) -> None:
    layout = LayoutWriter(tmp_path)
    config = layout.json_blob({"architecture": "amd64", "os": "linux"}, CONFIG)  # no rootfs
    manifest = {"schemaVersion": 2, "config": config, "layers": [layout.blob(b"x", LAYER)]}
    layout.index([layout.json_blob(manifest, MANIFEST)])
    with pytest.raises(ImageError, match="rootfs"):
        validate_layout(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(ImageError, match="imageLayoutVersion"):
        validate_layout(tmp_path)


# --- the independent tools on a layout umoci made -----------------------------------------


def test_tools_read_an_umoci_layout(tmp_path: Path) -> None:
    layout, ref = tmp_path / "layout", "t"
    _umoci_image(layout, ref, tmp_path / "hello.txt", b"hello\n")
    validate_layout(layout)

    seen = skopeo_inspect(layout, ref)
    index = json.loads((layout / "index.json").read_text())
    assert seen["manifest_digest"] == index["manifests"][0]["digest"]
    assert len(seen["manifest"]["layers"]) == len(seen["config"]["rootfs"]["diff_ids"]) == 1
    assert seen["config"]["os"] == "linux"

    rootfs = umoci_unpack(layout, ref, tmp_path / "bundle")
    snap = tree_snapshot(rootfs)
    assert snap["hello.txt"]["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert snap["hello.txt"]["type"] == "file"

    copy = tmp_path / "copy"
    skopeo_copy(f"oci:{layout}:{ref}", f"oci:{copy}:again")
    validate_layout(copy)
    assert skopeo_inspect(copy, "again")["config"]["rootfs"] == seen["config"]["rootfs"]


def _umoci_image(layout: Path, ref: str, src: Path, content: bytes) -> None:
    """umoci init + new + insert: an image with one layer holding one file."""
    src.write_bytes(content)
    rootless = [] if IS_ROOT else ["--rootless"]
    for argv in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:{ref}"],
        ["umoci", "insert", *rootless, "--image", f"{layout}:{ref}", str(src), "/" + src.name],
    ):
        subprocess.run(argv, check=True, capture_output=True)
