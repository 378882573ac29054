"""distill prune: what no tagged image needs goes; tagged images stay whole and usable."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from distill.oci.reference import normalize_name
from tests.conftest import RunDistill
from tests.helpers.readback import skopeo_inspect

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM busybox AS builder
RUN echo built > /artifact && dd if=/dev/zero of=/big bs=1k count=256 2>/dev/null
FROM busybox
COPY --from=builder /artifact /artifact
RUN --mount=type=cache,target=/cache,id=prune-test echo kept > /cache/f && echo final > /final
"""


@pytest.fixture
def store(distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> Path:
    """A store of its own with busybox and one multi-stage build tagged app:1."""
    root = tmp_path / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    distill("build", "--progress", "quiet", "-t", "app:1", str(ctx), root=root)
    # the builder stage on its own: its layer, lazy in the multi-stage build, becomes a
    # blob (an image of it was made), which no tag reaches
    distill("build", "--progress", "quiet", "--target", "builder", str(ctx), root=root)
    return root


def _blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs/sha256").iterdir()}


def _tagged_blobs(root: Path) -> set[str]:
    """What skopeo (not distill) says the tagged images consist of."""
    out = set()
    for entry in json.loads((root / "index.json").read_text())["manifests"]:
        name = entry["annotations"]["org.opencontainers.image.ref.name"]
        info = skopeo_inspect(root, normalize_name(name))
        manifest = info["manifest"]
        out.add(info["manifest_digest"].split(":")[1])
        out.add(manifest["config"]["digest"].split(":")[1])
        out.update(layer["digest"].split(":")[1] for layer in manifest["layers"])
    return out


def test_a_stage_no_output_ships_is_never_compressed(distill: RunDistill, busybox_tar: Path,
                                                     tmp_path: Path) -> None:
    """As BuildKit's lazy blobs: the builder stage's layer is hashed (its diff_id) and kept
    as a snapshot, but never written as a blob; only the shipped image's layers are."""
    root = tmp_path / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    distill("build", "--progress", "quiet", "-t", "app:1", str(ctx), root=root)
    assert _blobs(root) == _tagged_blobs(root)
    lazy = [json.loads(e.read_text()) for e in (root / "cache").iterdir()]
    assert any(v.get("snapshot") is True and "blob" not in v for v in lazy)
    # asked for in a cache export, it is compressed then
    cache = tmp_path / "cache"
    distill("build", "--progress", "quiet", "--cache-to", f"type=local,dest={cache},mode=max",
            str(ctx), root=root)
    index = json.loads((cache / "index.json").read_text())
    manifest = json.loads((cache / "blobs/sha256" / index["manifests"][0]["digest"]
                           .split(":")[1]).read_text())
    assert len(manifest["layers"]) == 3          # the builder's RUN, COPY, the final RUN


def test_prune_keeps_tagged_images_and_removes_the_rest(distill: RunDistill, store: Path,
                                                        tmp_path: Path) -> None:
    before = _blobs(store)
    tagged = _tagged_blobs(store)
    assert before - tagged, "the builder stage's layer should be an untagged blob"
    assert any((store / "snapshots").iterdir())

    proc = distill("prune", root=store)
    assert "Deleted:" in proc.stdout and "blobs" in proc.stdout and "snapshots" in proc.stdout
    assert "Total reclaimed space:" in proc.stdout
    assert _blobs(store) == tagged                  # exactly what the tagged images reach
    assert not any((store / "snapshots").iterdir())
    assert any((store / "cache-mounts").iterdir())  # only --all empties cache mounts
    for facts in (store / "layers").iterdir():
        assert facts.name in tagged
    for entry in (store / "cache").iterdir():       # no cache entry points at a gone blob
        blob = json.loads(entry.read_text()).get("blob")
        assert blob is None or blob["digest"].split(":")[1] in tagged

    # the images are whole: exported, and built on again (snapshots re-extracted)
    out = tmp_path / "out"
    distill("build", "--progress", "quiet", "-o", f"type=local,dest={out}", str(store.parent
            / "ctx"), root=store)
    assert (out / "artifact").read_text() == "built\n"
    assert (out / "final").read_text() == "final\n"
    assert "app:1" in distill("images", root=store).stdout


def test_prune_all_empties_the_build_cache(distill: RunDistill, store: Path) -> None:
    distill("prune", "--all", "-f", root=store)
    assert not any((store / "cache").iterdir())
    assert not any((store / "cache-mounts").iterdir())
    assert _blobs(store) == _tagged_blobs(store)
    proc = distill("build", "--progress", "plain", "-t", "app:1", str(store.parent / "ctx"),
                   root=store)
    assert "CACHED" not in proc.stdout + proc.stderr


def test_prune_all_refuses_while_the_store_is_in_use(distill: RunDistill, store: Path) -> None:
    """--all removes cache mounts a running RUN may have mounted: it needs the store to
    itself (a plain prune runs beside builds, keeping what they pinned: test_store_pins)."""
    before = _blobs(store)
    snapshots = sorted(p.name for p in (store / "snapshots").iterdir())
    with open(store / "store.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)             # what a running build holds
        proc = distill("prune", "--all", "-f", root=store, check=False)
    assert proc.returncode == 1
    assert "in use by another distill process" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _blobs(store) == before
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == snapshots
