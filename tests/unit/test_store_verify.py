"""``distill store verify``: each kind of damage is found, named, and repaired."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from distill.errors import StoreError
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.store.gc import prune
from distill.store.store import LayerFacts, Store
from distill.store.verify import verify


def _tar(text: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _image(store: Store, name: str, text: str) -> tuple[Descriptor, str]:
    """A tagged one-layer image; returns its manifest descriptor and its layer's hex."""
    tar = _tar(text)
    blob, size, diff_id, usize = store.blobs.write_gzip_layer(lambda out: out.write(tar))
    store.record_layer(blob, LayerFacts(diff_id, usize))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]}}).encode()
    cdigest, csize = store.blobs.put_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(cdigest), "size": csize},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(blob), "size": size}],
    }).encode()
    mdigest, msize = store.blobs.put_bytes(manifest)
    desc = Descriptor(mt.OCI_MANIFEST, mdigest, msize)
    store.names.tag(name, desc)
    return desc, blob.hex


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _kinds(report) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return sorted((f.kind, f.path.name) for f in report.findings)


def test_a_whole_store_is_consistent(store: Store) -> None:
    _image(store, "app:1", "hello")
    report = verify(store)
    assert report.findings == []
    assert report.consistent
    assert report.checked["images"] == 1 and report.checked["blobs"] == 3


def test_a_blob_that_does_not_hash_to_its_name_is_corrupt(store: Store) -> None:
    _, layer = _image(store, "app:1", "hello")
    store.blobs.blob_dir.joinpath(layer).write_bytes(b"bit rot")
    report = verify(store)
    assert ("corrupt", layer) in _kinds(report)
    # the tagged image now reaches a blob that is not whole
    assert ("missing", "index.json") in _kinds(report)
    assert not report.consistent
    repaired = verify(store, repair=True)
    assert repaired.consistent
    assert not store.blobs.blob_dir.joinpath(layer).exists()
    assert store.lookup("app:1") is None            # untagged: it could never be used
    assert verify(store).findings == []


def test_a_layer_fact_the_blob_disagrees_with_is_corrupt(store: Store) -> None:
    _, layer = _image(store, "app:1", "hello")
    fact = store.facts_dir / layer
    fact.write_text(json.dumps({"diff_id": "sha256:" + "0" * 64, "size": 1}))
    report = verify(store)
    assert _kinds(report) == [("corrupt", layer)]
    assert "unpacks to" in report.findings[0].what
    assert verify(store, repair=True).consistent
    assert not fact.exists() and verify(store).findings == []


def test_records_of_blobs_the_store_lacks_are_dangling(store: Store) -> None:
    _image(store, "app:1", "hello")
    gone = "ab" * 32
    (store.facts_dir / gone).write_text(json.dumps({"diff_id": "sha256:" + gone, "size": 1}))
    (store.cache_dir / "k1").write_text(json.dumps(
        {"blob": {"digest": "sha256:" + gone, "size": 1, "mediaType": mt.OCI_LAYER_GZIP}}))
    report = verify(store)
    assert _kinds(report) == [("dangling", gone), ("dangling", "k1")]
    assert report.consistent                 # builds check before they trust a record
    verify(store, repair=True)
    assert verify(store).findings == []


def test_torn_records_and_temp_files_are_found_and_removed(store: Store) -> None:
    _image(store, "app:1", "hello")
    (store.cache_dir / "k2").write_text('{"blob": ')            # torn: a bug or a bad disk
    (store.cache_dir / ".k3.x1y2").write_text("{}")            # atomic_write's temp file
    (store.root / ".index.json.abcd").write_text("{")
    report = verify(store)
    assert _kinds(report) == [("corrupt", "k2"), ("leftover", ".index.json.abcd"),
                              ("leftover", ".k3.x1y2")]
    verify(store, repair=True)
    assert verify(store).findings == []
    assert store.lookup("app:1") is not None


def test_an_index_that_does_not_parse_is_set_aside(store: Store) -> None:
    _image(store, "app:1", "hello")
    (store.root / "index.json").write_text('{"manifests": [')
    report = verify(store)
    assert _kinds(report) == [("corrupt", "index.json")]
    verify(store, repair=True)
    assert [p.name[:18] for p in store.root.glob("index.json.broken-*")] == \
        ["index.json.broken-"]
    assert verify(store).findings == [] and store.names.entries() == []
    # a second repair keeps the first set-aside copy
    (store.root / "index.json").write_text("[")
    verify(store, repair=True)
    assert len(list(store.root.glob("index.json.broken-*"))) == 2


@pytest.mark.parametrize("manifests", [
    '{"a": 1}',                                           # not a list
    '[{"digest": "sha256:zz"}, 5]',                        # no descriptors
    '[{"mediaType": "m", "digest": "sha256:%s", "size": 1, '
    '"annotations": {"org.opencontainers.image.ref.name": ["x"]}}]' % ("ab" * 32),
    '[{"mediaType": "m", "digest": "sha256:%s", "size": 1}]' % ("ab" * 32),  # no name, gone
])
def test_a_damaged_index_is_a_clear_error_and_repaired(store: Store, manifests: str) -> None:
    """Regression (outsider review): such an index.json was a traceback in every command,
    or one that verify --repair reported and could not fix."""
    _image(store, "app:1", "hello")
    index = json.loads((store.root / "index.json").read_text())
    good = index["manifests"]
    index["manifests"] = json.loads(manifests)
    if isinstance(index["manifests"], list):
        index["manifests"] += good
    (store.root / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match="are damaged") if manifests != \
            '[{"mediaType": "m", "digest": "sha256:%s", "size": 1}]' % ("ab" * 32) \
            else contextlib.nullcontext():
        Store(store.root).names.entries()
    report = verify(store, repair=True)
    assert report.consistent, report.findings
    assert verify(store).findings == []
    if isinstance(json.loads(manifests), list):
        assert store.lookup("app:1") is not None        # the whole entries are kept


def test_verify_does_not_run_beside_another_store_user(store: Store) -> None:
    Store(store.root)                           # another user, holding the lock shared
    with pytest.raises(StoreError, match="in use"):
        verify(Store(store.root))


def test_repair_never_follows_a_link_planted_in_the_store(store: Store, tmp_path: Path) -> None:
    """A symlink where a record or a blob should be is removed itself; what it points at
    (outside the store) is neither read whole nor removed."""
    _image(store, "app:1", "hello")
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("keep")
    (store.cache_dir / "k4").symlink_to(canary / "keep")
    (store.blobs.blob_dir / ("cd" * 32)).symlink_to(canary)
    (store.snapshot_dir / ("ef" * 32)).symlink_to(canary)
    (store.facts_dir / ("ab" * 32)).symlink_to("/dev/zero")
    report = verify(store, repair=True)
    assert {f.path.name for f in report.repaired} >= {"k4", "cd" * 32, "ef" * 32, "ab" * 32}
    assert (canary / "keep").read_text() == "keep"
    assert verify(store).findings == []


@pytest.mark.parametrize("name", ["snapshots", "blobs/sha256", "cache", "layers", "memo"])
def test_a_store_directory_replaced_by_a_link_is_refused(tmp_path: Path, name: str) -> None:
    """Regression (outsider review): a store directory that is a symlink was followed:
    opening the store chmodded its target 0700, and repair and prune removed what it
    held. Now the store refuses to open, naming the link; the target is untouched."""
    root = tmp_path / "store"
    _image(Store(root), "app:1", "hello")
    canary = tmp_path / "canary"
    canary.mkdir(mode=0o755)
    (canary / "keep").write_text("keep")
    path = root / name
    if path.is_dir():
        import shutil
        shutil.rmtree(path)
    path.symlink_to(canary)
    with pytest.raises(StoreError, match=f"{path} is a symbolic link"):
        Store(root)
    assert (canary / "keep").read_text() == "keep"
    assert canary.stat().st_mode & 0o777 == 0o755


def test_a_tar_layer_that_begins_like_zstd_or_gzip_verifies(store: Store) -> None:
    """Regression (second outsider review): verify guessed a layer's compression from its
    first bytes, so an uncompressed layer whose first name starts with zstd's or gzip's
    magic made verify (and --repair) end in a traceback, or call a good fact corrupt."""
    for magic in (b"\x28\xb5\x2f\xfd", b"\x1f\x8b\x08"):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            info = tarfile.TarInfo(magic.decode("utf-8", "surrogateescape") + "x")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"hi\n"))
        data = out.getvalue()
        assert data.startswith(magic)
        blob, _ = store.blobs.put_bytes(data)
        store.record_layer(blob, LayerFacts(Digest.of_bytes(data), len(data)))
    assert verify(store).findings == []


@pytest.mark.parametrize("where", ["cache", "layers", "memo", "made-blobs"])
def test_directories_and_fifos_where_records_belong(store: Store, where: str) -> None:
    """Regression (second outsider review): a directory where a record belongs made
    --repair, prune and builds fail ('Is a directory'); a FIFO hung prune."""
    import os

    _image(store, "app:1", "hello")
    base = store.root / where
    base.mkdir(exist_ok=True)
    (base / ("ab" * 32)).mkdir()
    os.mkfifo(base / ("cd" * 32))
    prune(Store(store.root))                     # neither hangs nor fails
    (base / ("ab" * 32)).mkdir(exist_ok=True)
    os.mkfifo(base / ("cd" * 32)) if not (base / ("cd" * 32)).exists() else None
    report = verify(store, repair=True)
    assert report.consistent
    assert not (base / ("ab" * 32)).exists() and not (base / ("cd" * 32)).exists()
    assert verify(store).findings == []


def test_a_fifo_or_stray_file_in_pins_neither_hangs_nor_pins(store: Store) -> None:
    """Regression (second outsider review): a FIFO in pins/ hung prune (and every build
    beside it); a stray name counted as a living process's pins forever."""
    import os

    other, _ = store.blobs.put_bytes(b"unreachable")
    os.mkfifo(store.root / "pins" / "junk")
    (store.root / "pins" / "stray").write_text(f"blob:{other.hex}\n")
    report = prune(Store(store.root))
    assert report.removed.get("blobs") == 1
    assert not (store.root / "pins" / "junk").exists()
