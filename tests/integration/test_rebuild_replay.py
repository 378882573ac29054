"""A no-change rebuild is replayed from the build's record (build/memo.py): the same
digest, nothing of the builder loaded. Any change of what a build reads, a moved tag or
a pruned image takes the normal way (whose step cache still makes it fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill

pytestmark = pytest.mark.integration

REPLAYED = "no change since the last build"


def _project(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text(f"{tmp_path.name}\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY a.txt /\nRUN busybox cat /a.txt\n")
    time.sleep(2.1)     # older than the clock's granularity: a build may be recorded
    return ctx


def _build(distill: RunDistill, root: Path, ctx: Path, *flags: str) -> tuple[str, str]:
    proc = distill("build", *flags, str(ctx), root=root)
    return proc.stdout.strip().splitlines()[-1], proc.stderr


@pytest.fixture
def root(distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    return store


def test_a_no_change_rebuild_is_replayed(distill: RunDistill, root: Path,
                                         tmp_path: Path) -> None:
    ctx = _project(tmp_path, "busybox")
    first, log = _build(distill, root, ctx, "-t", "app:1")
    assert REPLAYED not in log
    again, log = _build(distill, root, ctx, "-t", "app:1", "--progress", "plain")
    assert again == first and REPLAYED in log and "CACHED" in log
    quiet = subprocess.run([DISTILL, "build", "-q", "-t", "app:1", str(ctx)],
                           env={**os.environ, "DISTILL_ROOT": str(root)},
                           capture_output=True, text=True, check=True)
    assert quiet.stdout.strip() == first and quiet.stderr == ""
    # nothing of the builder is imported on the way
    trace = subprocess.run([sys.executable, "-X", "importtime", DISTILL, "build", "-q", "-t",
                            "app:1", str(ctx)], env={**os.environ, "DISTILL_ROOT": str(root)},
                           capture_output=True, text=True, check=True)
    assert trace.stdout.strip() == first
    assert "distill.build.builder" not in trace.stderr and "httpx" not in trace.stderr


def test_any_change_takes_the_normal_way(distill: RunDistill, root: Path,
                                         tmp_path: Path) -> None:
    ctx = _project(tmp_path, "busybox")
    first, _ = _build(distill, root, ctx, "-t", "app:1")
    # a touched file (its ctime moves), another flag, another tag: no replay, same image
    os.utime(ctx / "a.txt")
    again, log = _build(distill, root, ctx, "-t", "app:1")
    assert REPLAYED not in log and again == first
    _, log = _build(distill, root, ctx, "-t", "app:1", "--build-arg", "X=1")
    assert REPLAYED not in log
    # the tag moved by another build: no replay, the tag is set again
    other = tmp_path / "other"
    other.mkdir()
    (other / "Dockerfile").write_text("FROM busybox\nENV OTHER=1\n")
    _build(distill, root, other, "-t", "app:1")
    time.sleep(2.1)
    back, log = _build(distill, root, ctx, "-t", "app:1")
    assert REPLAYED not in log and back == first
    # --no-cache and outputs never replay
    _, log = _build(distill, root, ctx, "-t", "app:1", "--no-cache")
    assert REPLAYED not in log
    # a changed file: a new image
    (ctx / "a.txt").write_text("changed\n")
    changed, log = _build(distill, root, ctx, "-t", "app:1")
    assert REPLAYED not in log and changed != first


def test_a_pruned_image_is_built_again(distill: RunDistill, root: Path,
                                       tmp_path: Path) -> None:
    ctx = _project(tmp_path, "busybox")
    _build(distill, root, ctx, "-t", "app:1")
    index = json.loads((root / "index.json").read_text())     # app:1 untagged
    index["manifests"] = [m for m in index["manifests"] if "app:1" not in json.dumps(m)]
    (root / "index.json").write_text(json.dumps(index))
    distill("prune", root=root)
    _, log = _build(distill, root, ctx, "-t", "app:1")
    # built again (its cache went with it: the steps ran)
    assert REPLAYED not in log and "DONE" in log
