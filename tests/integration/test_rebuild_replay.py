"""A no-change rebuild is replayed from the build's record (builder/memo.py): the same
digest, nothing of the builder loaded. Any change of what a build reads, a moved tag or
a pruned image takes the normal way (whose step cache still makes it fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.clock import settled
from tests.helpers.progress import parse_plain

pytestmark = pytest.mark.integration

REPLAYED = "no change since the last build"


def _project(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text(f"{tmp_path.name}\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY a.txt /\nRUN busybox cat /a.txt\n")
    settled(ctx)        # older than the clock's granularity: a build may be recorded
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
    assert "distill.builder.scheduler" not in trace.stderr and "httpx" not in trace.stderr


def _steps(log: str) -> list[tuple[int, str, str]]:
    return [(s.number, s.title, s.outcome) for s in parse_plain(log)]


def test_a_replay_shows_what_a_cached_build_shows(distill: RunDistill, root: Path,
                                                  tmp_path: Path) -> None:
    """CACHED under exactly the steps a cached build prints it under: not under FROM nor
    the steps that only change the config, whatever the steps' text holds (" 1/")."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /\nRUN mkdir 1 && cp a.txt 1/\n"
                                    "ENV X=1\nUSER 1000\n")
    settled(ctx)
    _build(distill, root, ctx, "-t", "app:2")
    _, replayed = _build(distill, root, ctx, "-t", "app:2", "--progress", "plain")
    # --iidfile is not replayed: the builder runs, every step from its cache
    _, cached = _build(distill, root, ctx, "-t", "app:2", "--progress", "plain",
                       "--iidfile", str(tmp_path / "iid"))
    assert REPLAYED in replayed and REPLAYED not in cached
    assert _steps(replayed) == _steps(cached)
    assert [s[2] for s in _steps(replayed)].count("CACHED") == 2
    # the table's times were the first build's: a replay shows none
    table = replayed[replayed.index(REPLAYED):]
    assert not any(c.isdigit() and table[i + 1:i + 2] == "s" for i, c in enumerate(table))


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


def test_inputs_the_record_once_missed_are_seen(distill: RunDistill, root: Path,
                                               tmp_path: Path) -> None:
    """Found by an outside tester: a context given as a symlink, a -f Dockerfile given as
    a symlink, the .dockerignore beside a -f Dockerfile, and a --build-context directory
    whose name holds a colon were not in the record's key, so a changed input replayed
    the old image."""
    ctx = _project(tmp_path, "busybox")
    (tmp_path / "link").symlink_to(ctx)
    first, _ = _build(distill, root, tmp_path / "link", "-t", "app:1")
    _build(distill, root, tmp_path / "link", "-t", "app:1")
    (ctx / "a.txt").write_text("changed\n")
    settled(ctx)
    changed, log = _build(distill, root, tmp_path / "link", "-t", "app:1")
    assert REPLAYED not in log and changed != first

    outside = tmp_path / "df"
    outside.mkdir()
    (outside / "real").write_text("FROM busybox\nCOPY . /ctx/\n")
    (outside / "Dockerfile").symlink_to("real")
    named = tmp_path / "named:1"
    named.mkdir()
    (named / "n.txt").write_text("n1\n")
    settled(ctx, outside, named)
    flags = ("-f", str(outside / "Dockerfile"), "-t", "app:2",
             "--build-context", f"extra={named}")
    first, _ = _build(distill, root, ctx, *flags)
    _, log = _build(distill, root, ctx, *flags)
    assert REPLAYED in log
    for change in (lambda: (outside / "real").write_text("FROM busybox\nCOPY . /other/\n"),
                   lambda: (outside / "Dockerfile.dockerignore").write_text("a.txt\n"),
                   lambda: (named / "n.txt").write_text("n2\n")):
        change()
        settled(ctx, outside, named)
        _, log = _build(distill, root, ctx, *flags)
        assert REPLAYED not in log
        _, log = _build(distill, root, ctx, *flags)     # recorded again: replayed
        assert REPLAYED in log


def test_a_build_that_adds_from_a_server_is_never_replayed(
        distill: RunDistill, root: Path, tmp_path: Path) -> None:
    """Its sources live on a server: each build asks it (a 304 keeps the cache)."""
    from tests.helpers.httpserve import serve_directory

    www = tmp_path / "www"
    www.mkdir()
    (www / "f.txt").write_text("one\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with serve_directory(www) as url:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {url}/f.txt /f.txt\n")
        settled(ctx)
        for _ in range(2):
            _, log = _build(distill, root, ctx, "-t", "app:1", "--allow", "network.host")
            assert REPLAYED not in log
        (www / "f.txt").write_text("two\n")
        out = tmp_path / "out"
        distill("build", "--allow", "network.host", "-o", f"type=local,dest={out}",
                str(ctx), root=root)
        assert (out / "f.txt").read_text() == "two\n"
