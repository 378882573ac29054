"""The store (atomic, verified, concurrent-safe) and confined path resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.builder.sources import resolve_parents_glob, resolve_sources
from distill.confine import resolve_in_root
from distill.errors import ContextError, DigestMismatchError
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.store.store import Store


def test_blob_roundtrip_and_verification(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest, size = store.blobs.put_bytes(b"hello")
    assert digest == Digest.of_bytes(b"hello") and size == 5
    assert store.blobs.read(digest) == b"hello"
    with pytest.raises(DigestMismatchError):
        store.blobs.put_bytes(b"other", expected=digest)
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_temp_dirs_of_dead_processes_are_reclaimed(tmp_path: Path) -> None:
    orphan = tmp_path / "tmp" / "999999999-12345" / "mnt-x" / "upper"
    orphan.mkdir(parents=True)
    (orphan / "big").write_bytes(b"x" * 1000)
    live = Store(tmp_path)
    assert not (tmp_path / "tmp" / "999999999-12345").exists()
    Store(tmp_path)  # a second store object in the same live process keeps the first's dir
    assert live.blobs.tmp_dir.is_dir()


def test_concurrent_tagging_keeps_index_consistent(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from distill.store.store import Store\n"
        "from distill.oci.descriptor import Descriptor\n"
        "s = Store(Path(sys.argv[1]))\n"
        "for i in range(40):\n"
        "    d, n = s.blobs.put_bytes(f'{sys.argv[2]}-{i}'.encode())\n"
        "    s.names.tag(f'img-{sys.argv[2]}-{i}:latest', Descriptor('application/vnd.oci.image.manifest.v1+json', d, n))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(k)])
             for k in range(4)]
    assert all(p.wait() == 0 for p in procs)
    names = {n for n, _ in Store(tmp_path).names.entries()}
    assert len(names) == 160


def test_lookup_normalises_names_as_docker(tmp_path: Path) -> None:
    store = Store(tmp_path)
    d, n = store.blobs.put_bytes(b"{}")
    desc = Descriptor("application/vnd.oci.image.manifest.v1+json", d, n)
    store.names.tag("docker.io/library/python:3.12", desc)
    store.names.tag("busybox:latest", desc)          # as an older distill recorded it
    for spelling in ("python:3.12", "library/python:3.12", "docker.io/python:3.12",
                     "index.docker.io/library/python:3.12", f"python@{d}",
                     "busybox", "docker.io/library/busybox:latest"):
        found = store.lookup(spelling)
        assert found is not None and found.digest == d, spelling
    for absent in ("python", "python:3.11", "localhost/python:3.12", "other/python:3.12",
                   "python@sha256:" + "b" * 64):
        assert store.lookup(absent) is None, absent


def test_resolve_in_root_never_leaves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../", root / "up")
    os.symlink("loop", root / "loop")
    assert resolve_in_root(root, "/abs/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "up/etc") == root / "etc"
    assert resolve_in_root(root, "../../x") == root / "x"
    with pytest.raises(Exception, match="symbolic links"):
        resolve_in_root(root, "loop")


def test_sources_globs_and_escapes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "c.md").write_text("c")
    os.symlink("/etc/passwd", tmp_path / "evil")
    found = resolve_sources(tmp_path, ["*.txt"], "ctx")
    assert [s.rel for s in found] == ["a.txt", "b.txt"]
    assert resolve_sources(tmp_path, ["*.nothing"], "ctx") == []
    with pytest.raises(ContextError, match="outside the build context"):
        resolve_sources(tmp_path, ["../x"], "ctx", forbid_escape=True)
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(tmp_path, ["evil"], "ctx")  # /etc/passwd inside the context: absent


def test_parents_globs_are_include_patterns(tmp_path: Path) -> None:
    """COPY --parents: ** matches any number of directories (none too), as in
    .dockerignore; a /./ pivot is each match's base; a matched directory is one source."""
    for rel in ("src/a.txt", "src/x/b.txt", "src/x/y/c.txt", "src/x/y/d.md",
                "src/app/main.py", "src/app/sub/deep.py", "src/lib.txt/inner"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    found = resolve_parents_glob(tmp_path, "./src/**/*.txt")
    assert [(s.rel, s.base) for s in found] == [
        ("src/a.txt", "."), ("src/lib.txt", "."), ("src/x/b.txt", "."),
        ("src/x/y/c.txt", ".")]
    found = resolve_parents_glob(tmp_path, "src/./app/*.py")
    assert [(s.rel, s.path_from_base()) for s in found] == [("src/app/main.py", "app/main.py")]
    assert [s.rel for s in resolve_parents_glob(tmp_path, "*/./**/deep.py")] == [
        "src/app/sub/deep.py"]
    assert resolve_parents_glob(tmp_path, "src/**/*.nothing") == []
    with pytest.raises(ContextError, match="outside the build context"):
        resolve_parents_glob(tmp_path, "../**/x", forbid_escape=True)


def test_reachable_blobs_follow_indexes_manifests_and_configs(tmp_path: Path) -> None:
    from distill.oci import mediatypes as mt
    from distill.oci.descriptor import Descriptor
    from distill.store.gc import reachable_blobs

    store = Store(tmp_path / "store")
    layer, _ = store.blobs.put_bytes(b"not json: a layer")
    config, _ = store.blobs.put_bytes(b'{"architecture": "amd64", "os": "linux"}')
    orphan, _ = store.blobs.put_bytes(b"an untagged layer")

    def desc(media: str, digest: Digest) -> dict[str, object]:
        return {"mediaType": media, "digest": str(digest), "size": 1}

    manifest, size = store.blobs.put_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, config), "layers": [desc(mt.OCI_LAYER_GZIP, layer)],
    }).encode())
    index, isize = store.blobs.put_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_INDEX,
        "manifests": [desc(mt.OCI_MANIFEST, manifest)]}).encode())
    store.names.tag("multi:1", Descriptor(mt.OCI_INDEX, index, isize))
    assert reachable_blobs(store) == {d.hex for d in (index, manifest, config, layer)}
    assert orphan.hex not in reachable_blobs(store)
