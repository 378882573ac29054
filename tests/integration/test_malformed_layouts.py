"""Malformed OCI layouts (``--build-context NAME=oci-layout://PATH``) are clean errors.

Each case breaks one thing in a valid two-layer layout (busybox + one RUN layer): wrong
JSON types, missing fields, sizes and digests that lie, blobs that are not regular files,
a layer labelled gzip that is not, counts that differ. Every one must fail with exit
code 1, an ``error:`` line naming the layout and what is wrong, and no traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.integration.test_security_store import Layout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def layout_store(tmp_path_factory: pytest.TempPathFactory, distill: RunDistill,
                 busybox_tar: Path) -> tuple[Path, Path]:
    """(store root, a valid layout of busybox + one RUN layer tagged '1')."""
    base = tmp_path_factory.mktemp("malformed")
    root = base / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo layered > /layered\n")
    layout = base / "good"
    distill("build", "-t", "good:1", "--output", f"type=oci,dest={layout},tar=false", str(ctx),
            root=root)
    return root, layout


def _tar_blob() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plain")
        data = os.urandom(64)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _raw_index(text: str) -> Callable[[Layout], None]:
    def edit(lay: Layout) -> None:
        (lay.path / "index.json").write_text(text)
    return edit


def _index(change: Callable[[dict], None]) -> Callable[[Layout], None]:
    def edit(lay: Layout) -> None:
        lay.save()
        change(lay.index)
        (lay.path / "index.json").write_text(json.dumps(lay.index))
    return edit


def _manifest(change: Callable[[dict], None]) -> Callable[[Layout], None]:
    def edit(lay: Layout) -> None:
        change(lay.manifest)
        _manifest_bytes(json.dumps(lay.manifest).encode())(lay)
    return edit


def _config(change: Callable[[dict], None]) -> Callable[[Layout], None]:
    def edit(lay: Layout) -> None:
        change(lay.config)
        lay.save()
    return edit


def _manifest_bytes(data: bytes) -> Callable[[Layout], None]:
    def edit(lay: Layout) -> None:
        lay.index["manifests"][0].update(lay.put(data))
        (lay.path / "index.json").write_text(json.dumps(lay.index))
    return edit


def _manifest_blob(change: Callable[[Path], None]) -> Callable[[Layout], None]:
    """Replace the manifest's blob file (its digest stays) with something else."""
    def edit(lay: Layout) -> None:
        fresh = json.dumps({**lay.manifest, "annotations": {"x": os.urandom(8).hex()}}).encode()
        lay.index["manifests"][0].update(lay.put(fresh))   # a digest the store has not seen
        (lay.path / "index.json").write_text(json.dumps(lay.index))
        path = lay.blob_path(lay.index["manifests"][0]["digest"])
        path.unlink()
        change(path)
    return edit


def _layer(i: int, **fields: object) -> Callable[[Layout], None]:
    return _manifest(lambda m: m["layers"][i].update(fields))


def _plain_layer_as(media_type: str) -> Callable[[Layout], None]:
    """An uncompressed tar blob (right digest, right size) listed as ``media_type``."""
    def edit(lay: Layout) -> None:
        data = _tar_blob()
        lay.manifest["layers"][1].update(lay.put(data), mediaType=media_type)
        lay.config["rootfs"]["diff_ids"][1] = _digest(data)
        lay.save()
    return edit


def _truncated_gzip(lay: Layout) -> None:
    data = gzip.compress(_tar_blob() * 20)
    lay.manifest["layers"][1].update(lay.put(data[: len(data) // 2]))
    lay.save()


def _nested_self_index(lay: Layout) -> None:
    # an image index whose only entry is an index: nesting without end is refused
    inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": []}
    desc = {"mediaType": inner["mediaType"], **lay.put(json.dumps(inner).encode())}
    for _ in range(6):
        inner = {**inner, "manifests": [desc]}
        desc = {"mediaType": inner["mediaType"], **lay.put(json.dumps(inner).encode())}
    lay.index["manifests"] = [{**desc, "annotations": lay.index["manifests"][0]["annotations"]}]
    (lay.path / "index.json").write_text(json.dumps(lay.index))


def _deep_json(lay: Layout) -> None:
    _manifest_bytes(b"[" * 100_000 + b"]" * 100_000)(lay)


def _unknown_blob(lay: Layout) -> None:
    data = os.urandom(100)
    fake = "sha256:" + hashlib.sha256(b"other" + data).hexdigest()
    lay.blob_path(fake).write_bytes(data)  # a file whose name is not its hash
    lay.manifest["layers"][1].update(digest=fake, size=len(data))
    lay.save()


def _size(lay: Layout, delta: int) -> None:
    lay.save()
    lay.index["manifests"][0]["size"] += delta
    (lay.path / "index.json").write_text(json.dumps(lay.index))


CASES: dict[str, tuple[Callable[[Layout], None], str]] = {
    "index-not-json": (_raw_index("{not json"), "index.json is not valid JSON"),
    "index-a-list": (_raw_index("[]"), "index.json is not a JSON object"),
    "index-no-manifests": (_raw_index('{"schemaVersion": 2}'), "no 'manifests'"),
    "manifests-a-string": (_index(lambda i: i.update(manifests="sha256:abc")),
                           "'manifests' is a string, not a list"),
    "manifests-entry-null": (_index(lambda i: i.update(manifests=[None])),
                             "manifests[0] is null, not a JSON object"),
    "descriptor-no-digest": (_index(lambda i: i["manifests"][0].pop("digest")),
                             "digest is null, not a digest"),
    "descriptor-digest-int": (_index(lambda i: i["manifests"][0].update(digest=7)),
                              "digest is a number"),
    "descriptor-digest-bad": (_index(lambda i: i["manifests"][0].update(digest="sha256:xyz")),
                              "invalid digest"),
    "descriptor-sha512": (_index(lambda i: i["manifests"][0].update(
        digest="sha512:" + "0" * 128)), "not a sha256 digest"),
    "descriptor-size-string": (_index(lambda i: i["manifests"][0].update(size="12")),
                               "size is '12'"),
    "descriptor-size-negative": (_index(lambda i: i["manifests"][0].update(size=-1)),
                                 "size is -1"),
    "descriptor-size-bool": (_index(lambda i: i["manifests"][0].update(size=True)),
                             "size is True"),
    "annotations-not-strings": (_index(lambda i: i["manifests"][0]["annotations"].update(
        x=5)), "annotations must map strings to strings"),
    "platform-a-string": (_index(lambda i: i["manifests"][0].update(platform="linux")),
                          "platform must be an object"),
    "media-type-missing": (_index(lambda i: i["manifests"][0].pop("mediaType")),
                           "mediaType is null"),
    "manifest-size-too-big": (lambda lay: _size(lay, +10), "but its descriptor says"),
    "manifest-size-too-small": (lambda lay: _size(lay, -10), "but its descriptor says"),
    "manifest-missing": (_manifest_blob(lambda p: None), "is missing"),
    "manifest-symlink-to-zero": (_manifest_blob(lambda p: p.symlink_to("/dev/zero")),
                                 "is a symbolic link"),
    "manifest-a-fifo": (_manifest_blob(lambda p: os.mkfifo(p)), "not a regular file"),
    "manifest-a-directory": (_manifest_blob(lambda p: p.mkdir()), "not a regular file"),
    "manifest-not-json": (_manifest_bytes(b"\x00\xffnot json"), "is not valid JSON"),
    "manifest-deep-json": (_deep_json, "nests too deeply"),
    "manifest-a-list": (_manifest_bytes(b"[1, 2]"), "is not a JSON object"),
    "config-null": (_manifest(lambda m: m.update(config=None)),
                    "'config' is null, not a JSON object"),
    "config-a-string": (_manifest(lambda m: m.update(config="sha256:00")),
                        "'config' is a string"),
    "config-missing": (_manifest(lambda m: m.pop("config")), "has no 'config'"),
    "config-not-a-config": (_manifest(lambda m: m["config"].update(
        mediaType="application/vnd.example.artifact")), "is not an image config"),
    "layers-an-object": (_manifest(lambda m: m.update(layers={"a": 1})),
                         "'layers' is an object, not a list"),
    "layers-entry-a-number": (_manifest(lambda m: m["layers"].append(3)),
                              "layers[2] is a number"),
    "more-layers-than-diff-ids": (_manifest(lambda m: m["layers"].append(m["layers"][1])),
                                  "lists 3 layers but its config has 2 diff_ids"),
    "fewer-layers-than-diff-ids": (_manifest(lambda m: m["layers"].pop()),
                                   "lists 1 layers but its config has 2 diff_ids"),
    "rootfs-missing": (_config(lambda c: c.pop("rootfs")), "'rootfs' is null"),
    "diff-ids-a-string": (_config(lambda c: c["rootfs"].update(diff_ids="sha256:0")),
                          "'rootfs.diff_ids' is a string"),
    "diff-id-a-number": (_config(lambda c: c["rootfs"]["diff_ids"].__setitem__(1, 5)),
                         "diff_ids[1] is a number"),
    "diff-id-invalid": (_config(lambda c: c["rootfs"]["diff_ids"].__setitem__(1, "sha256:1")),
                        "invalid digest"),
    "diff-id-wrong": (_config(lambda c: c["rootfs"]["diff_ids"].__setitem__(1, _digest(b"x"))),
                      "unpacks to"),
    "runtime-config-a-string": (_config(lambda c: c.update(config="cmd")),
                                "'config' is a string"),
    "runtime-env-a-number": (_config(lambda c: c.setdefault("config", {}).update(Env=5)),
                             "malformed image config"),
    "history-entries-strings": (_config(lambda c: c.update(history=["a"])),
                                "history[0] is a string"),
    "layer-gzip-label-on-plain-tar": (_plain_layer_as("application/vnd.oci.image.layer.v1.tar+gzip"),
                                      "labelled gzip but is not valid gzip"),
    "layer-truncated-gzip": (_truncated_gzip, "not valid gzip"),
    "layer-unknown-media-type": (_plain_layer_as("application/vnd.example.layer"),
                                 "is not supported"),
    "layer-size-lies": (_layer(1, size=12), "but its descriptor says 12"),
    "layer-blob-missing": (_layer(1, digest=_digest(b"nowhere"), size=7), "is missing"),
    "layer-content-not-its-digest": (_unknown_blob, "expected"),
    "nested-indexes-without-end": (_nested_self_index, "nest more than"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_layout_is_a_clean_error(distill: RunDistill, layout_store: tuple[Path, Path],
                                           tmp_path: Path, case: str) -> None:
    root, good = layout_store
    layout = tmp_path / "layout"
    shutil.copytree(good, layout)
    edit, needle = CASES[case]
    edit(Layout(layout))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN true\n")
    proc = distill("build", "--build-context", f"base=oci-layout://{layout}:1", str(ctx),
                   root=root, check=False)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 1, f"{proc.returncode}\n{proc.stderr}"
    assert f"error: {ctx / 'Dockerfile'}:1: OCI layout {layout}: " in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


def test_the_unbroken_layout_builds(distill: RunDistill, layout_store: tuple[Path, Path],
                                    tmp_path: Path) -> None:
    root, good = layout_store
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN cat /layered > /seen\n")
    out = tmp_path / "out"
    distill("build", "--build-context", f"base=oci-layout://{good}:1", "--output",
            f"type=local,dest={out}", str(ctx), root=root)
    assert (out / "seen").read_text() == "layered\n"


def test_blobs_reached_through_a_symlink_out_of_the_layout_are_refused(
        distill: RunDistill, layout_store: tuple[Path, Path], tmp_path: Path) -> None:
    """A layout whose blobs/ is a symlink to another directory (another store's blobs, say,
    private to root) reads nothing there: the blob is missing from the layout."""
    _, good = layout_store
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(good / "blobs", elsewhere / "blobs")
    layout = tmp_path / "layout"
    shutil.copytree(good, layout)
    shutil.rmtree(layout / "blobs")
    (layout / "blobs").symlink_to(elsewhere / "blobs")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN true\n")
    proc = distill("build", "--build-context", f"base=oci-layout://{layout}:1", str(ctx),
                   root=tmp_path / "fresh-store", check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "is missing" in proc.stderr, proc.stderr
