"""Issue 8, finding 5 and the store's privacy: an image cannot poison what another image
shares through the store, and the store is closed to other users.

* A layout that lists the attacker's blob under a victim image's diff_id is refused at
  import, whether or not distill has seen the blob before (its layer facts exist), and
  nothing of the attacker's lands in ``snapshots/``: a later ``FROM victim`` sees the
  victim's files.
* An image already in the store whose config lies (written there by other means) is
  refused when its layer is unpacked: snapshots are named by what distill hashed.
* A gzip bomb or a sparse tar as a layer stops at distill's archive limits.
* The store's directories are 0700; another user cannot list or read snapshots, and
  overlays are mounted nodev,nosuid (a device node in a layer is no host device).
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

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration

SECRET = "canary-secret-7f3a9c\n"


# -- helpers ----------------------------------------------------------------------------

def _store(distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    return root


def _ctx(tmp_path: Path, name: str, dockerfile: str) -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _canary(tmp_path: Path) -> Path:
    canary = tmp_path / "outside" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text(SECRET)
    return canary


def _assert_canary(canary: Path, *trees: Path) -> None:
    assert canary.read_text() == SECRET
    for tree in trees:
        for dirpath, _, files in os.walk(tree):
            for name in files:
                path = Path(dirpath, name)
                if path.is_file() and not path.is_symlink():
                    assert SECRET.encode() not in path.read_bytes(), path


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip layer of regular files: (blob bytes, true diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


class Layout:
    """An OCI layout directory read as plain JSON, to be rewritten by a test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = json.loads((path / "index.json").read_text())
        self.manifest = self.read(self.index["manifests"][0]["digest"])
        self.config = self.read(self.manifest["config"]["digest"])

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":")[1]

    def read(self, digest: str) -> Any:
        return json.loads(self.blob_path(digest).read_bytes())

    def put(self, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(digest).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def save(self) -> None:
        """Write config and manifest as new blobs and point the index at them."""
        if isinstance(self.manifest.get("config"), dict):
            self.manifest["config"].update(self.put(json.dumps(self.config).encode()))
        self.index["manifests"][0].update(self.put(json.dumps(self.manifest).encode()))
        (self.path / "index.json").write_text(json.dumps(self.index))


def _store_image(root: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of the image tagged ``name`` in the store at ``root``."""
    index = json.loads((root / "index.json").read_text())
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] == name:
            blobs = root / "blobs" / "sha256"
            manifest = json.loads((blobs / m["digest"].split(":")[1]).read_bytes())
            config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
            return manifest, config
    raise AssertionError(f"{name} is not tagged in {root}")


def _build_victim(distill: RunDistill, root: Path, tmp_path: Path) -> Path:
    """victim:1 (busybox + /who = victim) in the store; returns its OCI layout."""
    ctx = _ctx(tmp_path, "victim", "FROM busybox\nRUN echo victim > /who\n")
    distill("build", "-t", "victim:1", str(ctx), root=root)
    layout = tmp_path / "victim-layout"
    distill("build", "-t", "victim:1", "--output", f"type=oci,dest={layout},tar=false",
            str(ctx), root=root)
    return layout


def _snapshot_files(root: Path, own: str = "") -> set[str]:
    """Names of files in every snapshot but ``own`` (the attacker image's own diff_id,
    where its files rightly are)."""
    return {name for snap in (root / "snapshots").iterdir() if snap.name != own.split(":")[-1]
            for _, _, files in os.walk(snap) for name in files}


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 1, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "error: " in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    return proc.stderr


def _victim_still_intact(distill: RunDistill, root: Path, tmp_path: Path) -> Path:
    ctx = _ctx(tmp_path, "later", "FROM victim:1\nRUN cat /who > /seen\n")
    out = tmp_path / "later-out"
    distill("build", "--no-cache", "--output", f"type=local,dest={out}", str(ctx), root=root)
    assert (out / "seen").read_text() == "victim\n"
    assert (out / "who").read_text() == "victim\n"
    assert not (out / "evil").exists()
    return out


# -- finding 5: diff_ids are computed, never believed ------------------------------------

@pytest.mark.parametrize("primed", [False, True], ids=["unknown-blob", "blob-with-facts"])
def test_layout_cannot_pass_its_layer_off_as_a_victims(
        distill: RunDistill, busybox_tar: Path, tmp_path: Path, primed: bool) -> None:
    canary = _canary(tmp_path)
    root = _store(distill, busybox_tar, tmp_path)
    victim = Layout(_build_victim(distill, root, tmp_path))
    victim_diff = victim.config["rootfs"]["diff_ids"][1]
    distill("prune", root=root)   # the victim's snapshot is made again when needed
    assert not (root / "snapshots" / victim_diff.split(":")[1]).exists()

    evil_blob, evil_diff = _layer({"who": b"attacker\n",
                                   "evil": b"#!/bin/sh\ncat " + str(canary).encode() + b"\n"})
    if primed:  # distill has seen the blob, honestly labelled: its layer facts exist
        honest = tmp_path / "honest"
        shutil.copytree(victim.path, honest)
        lay = Layout(honest)
        lay.manifest["layers"][1].update(lay.put(evil_blob))
        lay.config["rootfs"]["diff_ids"][1] = evil_diff
        lay.save()
        ctx = _ctx(tmp_path, "honest-ctx", "FROM base\nRUN cat /who\n")
        distill("build", "--build-context", f"base=oci-layout://{honest}", str(ctx), root=root)
        assert (root / "layers").is_dir() and any((root / "layers").iterdir())

    hostile = tmp_path / "hostile"
    shutil.copytree(victim.path, hostile)
    lay = Layout(hostile)
    evil_desc = lay.put(evil_blob)
    lay.manifest["layers"][1].update(evil_desc)       # the attacker's blob...
    assert lay.config["rootfs"]["diff_ids"][1] == victim_diff  # ...under the victim's name
    lay.save()
    ctx = _ctx(tmp_path, "hostile-ctx", "FROM base\nRUN cat /who\n")
    proc = distill("build", "--build-context", f"base=oci-layout://{hostile}", str(ctx),
                   root=root, check=False)
    _assert_clean_failure(proc, str(hostile), evil_desc["digest"], "unpacks to", victim_diff)
    assert "#2" not in proc.stderr, "nothing ran"

    assert "evil" not in _snapshot_files(root, own=evil_diff), \
        "the attacker's files reached another image's snapshot"
    victim_snap = root / "snapshots" / victim_diff.split(":")[1]
    assert not victim_snap.exists() or (victim_snap / "who").read_text() == "victim\n"
    out = _victim_still_intact(distill, root, tmp_path)
    _assert_canary(canary, out, root)


def test_a_lying_image_in_the_store_is_refused_when_unpacked(
        distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> None:
    """Defence in depth: a snapshot is named by the diff_id distill computes while it
    unpacks the blob, so even a forged store entry cannot fill another image's."""
    from distill.formats.stored import save
    from distill.image.image import Image, Layer
    from distill.oci import mediatypes as mt
    from distill.oci.config import ImageConfig
    from distill.oci.descriptor import Descriptor
    from distill.oci.digest import Digest
    from distill.store.store import Store

    canary = _canary(tmp_path)
    root = _store(distill, busybox_tar, tmp_path)
    victim = Layout(_build_victim(distill, root, tmp_path))
    diff_ids = victim.config["rootfs"]["diff_ids"]
    evil_blob, _ = _layer({"who": b"attacker\n", "evil": b"x"})
    store = Store(root)
    try:
        digest, size = store.blobs.put_bytes(evil_blob)
        base = victim.manifest["layers"][0]
        layers = (Layer(Descriptor(base["mediaType"], Digest(base["digest"]), base["size"]),
                        Digest(diff_ids[0]), -1),
                  Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), Digest(diff_ids[1]), -1))
        forged = Image(ImageConfig(diff_ids=tuple(Digest(d) for d in diff_ids)), layers)
        store.names.tag("forged:1", save(store, forged))
    finally:
        del store
    distill("prune", root=root)
    ctx = _ctx(tmp_path, "forged-ctx", "FROM forged:1\nRUN cat /who\n")
    proc = distill("build", str(ctx), root=root, check=False)
    _assert_clean_failure(proc, str(digest), "unpacks to", diff_ids[1])
    assert "evil" not in _snapshot_files(root)
    out = _victim_still_intact(distill, root, tmp_path)
    _assert_canary(canary, out, root)


# -- archive limits on layers ----------------------------------------------------------

def _bomb(expanded: int) -> bytes:
    """A gzip layer of one file of ``expanded`` zero bytes, as concatenated gzip members
    (about 1000:1): a couple of megabytes."""
    info = tarfile.TarInfo("zeros")
    info.size = expanded
    chunk = 16 << 20
    assert expanded % chunk == 0
    zeros = gzip.compress(bytes(chunk), compresslevel=9, mtime=0)
    return (gzip.compress(info.tobuf(tarfile.PAX_FORMAT), mtime=0)
            + zeros * (expanded // chunk) + gzip.compress(bytes(1024), mtime=0))


def test_gzip_bomb_layer_is_refused(distill: RunDistill, busybox_tar: Path,
                                    tmp_path: Path) -> None:
    root = _store(distill, busybox_tar, tmp_path)
    lay = Layout(_build_victim(distill, root, tmp_path))
    bomb = _bomb(1280 << 20)        # 1.25 GiB of zeros in ~1.3 MB
    assert len(bomb) < 4 << 20
    lay.manifest["layers"][1].update(lay.put(bomb))
    lay.save()
    ctx = _ctx(tmp_path, "bomb-ctx", "FROM base\n")
    proc = distill("build", "--build-context", f"base=oci-layout://{lay.path}", str(ctx),
                   root=root, check=False)
    _assert_clean_failure(proc, str(lay.path), "decompression bomb", "256 times",
                          "distill.limits")


def test_gzip_bomb_rootfs_import_is_refused(distill: RunDistill, tmp_path: Path) -> None:
    tarball = tmp_path / "bomb.tar.gz"
    tarball.write_bytes(_bomb(1280 << 20))
    root = tmp_path / "store"
    proc = distill("import", str(tarball), "bomb:1", root=root, check=False)
    _assert_clean_failure(proc, str(tarball), "decompression bomb")
    assert "bomb:1" not in (root / "index.json").read_text()


def test_sparse_tar_base_is_refused(distill: RunDistill, tmp_path: Path) -> None:
    """A 10 KB tar declaring a 300 MB sparse file: refused, nothing big is written."""
    work = tmp_path / "sparse"
    work.mkdir()
    with open(work / "big", "wb") as f:
        f.truncate(300 << 20)
    tarball = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(tarball), "-C", str(work), "big"],
                   check=True)
    (work / "big").unlink()
    assert tarball.stat().st_size < 64 << 10
    root = tmp_path / "store"
    distill("import", str(tarball), "sparse:1", root=root)
    ctx = _ctx(tmp_path, "ctx", "FROM sparse:1\nRUN true\n")
    proc = distill("build", str(ctx), root=root, check=False)
    _assert_clean_failure(proc, "sparse", "'big'")
    for dirpath, _, files in os.walk(root):
        for name in files:
            assert os.lstat(Path(dirpath, name)).st_size < 16 << 20, (dirpath, name)


# -- the store is private ----------------------------------------------------------------

def test_store_directories_are_private(distill: RunDistill, busybox_tar: Path,
                                       tmp_path: Path) -> None:
    root = _store(distill, busybox_tar, tmp_path)
    os.chmod(root, 0o755)   # an older store: opened again, it is closed
    ctx = _ctx(tmp_path, "ctx", "FROM busybox\nRUN echo private > /secret\n")
    distill("build", "-t", "private:1", str(ctx), root=root)
    for name in ("", "blobs", "snapshots", "layers", "cache", "tmp"):
        mode = stat.S_IMODE(os.stat(root / name).st_mode)
        assert mode == 0o700, f"{root / name} is {oct(mode)}"
    snapshots = list((root / "snapshots").iterdir())
    assert snapshots
    for snap in snapshots:
        assert stat.S_IMODE(os.stat(snap).st_mode) == 0o700, snap
    secret = next(s / "secret" for s in snapshots if (s / "secret").exists())
    # another user cannot list the store, nor reach a file whose path it knows
    for argv in (["ls", str(root)], ["ls", str(root / "snapshots")], ["cat", str(secret)]):
        proc = subprocess.run(argv, user=65534, group=65534, extra_groups=[],
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0 and "ermission denied" in proc.stderr, (argv, proc)


def test_overlay_is_nodev_and_nosuid(tmp_path: Path) -> None:
    """A device node a layer carries is not a host device through distill's mounts."""
    from distill.sandbox import overlay_mount

    lower = tmp_path / "lower"
    lower.mkdir()
    os.mknod(lower / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))   # /dev/zero
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with overlay_mount([lower], scratch) as mnt:
        assert stat.S_ISCHR(os.lstat(mnt.merged / "zero").st_mode)
        with pytest.raises(PermissionError):
            os.open(mnt.merged / "zero", os.O_RDONLY)
        target = str(mnt.merged).encode()
        with open("/proc/self/mountinfo", "rb") as f:
            options = next(line.split()[5] for line in f if line.split()[4] == target)
        assert {b"nodev", b"nosuid"} <= set(options.split(b",")), options


def test_sparse_tar_added_from_the_context_is_refused(distill: RunDistill, busybox_image: str,
                                                      tmp_path: Path) -> None:
    """ADD unpacks local archives under the same limits as layers: a 10 KB tar declaring
    a 300 MB sparse file is a clean error."""
    work = tmp_path / "sparse"
    work.mkdir()
    with open(work / "big", "wb") as f:
        f.truncate(300 << 20)
    ctx = _ctx(tmp_path, "ctx", f"FROM {busybox_image}\nADD sparse.tar /unpacked/\n")
    subprocess.run(["tar", "--sparse", "-cf", str(ctx / "sparse.tar"), "-C", str(work), "big"],
                   check=True)
    (work / "big").unlink()
    proc = distill("build", str(ctx), check=False)
    _assert_clean_failure(proc, "sparse", "'big'")
