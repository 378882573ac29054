"""A cached ADD fetches nothing (issue 10): a git source is keyed on the commit its ref
names (``git ls-remote``), a URL on its content's sha256, revalidated with the server's
Last-Modified (a 304 reuses it), or on --checksum with no request at all. Real servers
on 127.0.0.1 (reached with --allow network.host)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.gitserve import bare_repo, git, http_server
from tests.helpers.httpserve import serve_directory

pytestmark = pytest.mark.integration


@contextmanager
def _web(directory: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Python's file server (Last-Modified, If-Modified-Since → 304); yields its URL and
    the (path, status) of every request."""
    answered: list[tuple[str, int]] = []
    with serve_directory(directory, answered) as url:
        yield url, answered


def _build(distill: RunDistill, ctx: Path, dockerfile: str) -> tuple[str, str]:
    (ctx / "Dockerfile").write_text(dockerfile)
    proc = distill("build", "--progress", "plain", "--allow", "network.host", str(ctx))
    return proc.stdout.strip().splitlines()[-1], proc.stderr


def test_a_cached_add_of_a_url_downloads_nothing(distill: RunDistill, busybox_image: str,
                                                 tmp_path: Path) -> None:
    www, ctx = tmp_path / "www", tmp_path / "ctx"
    www.mkdir()
    ctx.mkdir()
    (www / "data.txt").write_text(f"first {tmp_path.name}\n")
    os.utime(www / "data.txt", (1_500_000_000, 1_500_000_000))
    with _web(www) as (base, answered):
        dockerfile = f"FROM {busybox_image}\nADD {base}/data.txt /data.txt\n"
        first, log = _build(distill, ctx, dockerfile)
        assert answered == [("/data.txt", 200)] and "CACHED" not in log
        again, log = _build(distill, ctx, dockerfile)
        assert answered[1:] == [("/data.txt", 304)]      # asked, not downloaded
        assert "CACHED" in log and again == first
        # the server's file changes: downloaded, and the step runs
        (www / "data.txt").write_text(f"second {tmp_path.name}\n")
        os.utime(www / "data.txt", (1_600_000_000, 1_600_000_000))
        changed, log = _build(distill, ctx, dockerfile)
        assert ("/data.txt", 200) in answered[2:] and "CACHED" not in log
        assert changed != first
        # with --checksum the key is the checksum: no request at all
        digest = hashlib.sha256((www / "data.txt").read_bytes()).hexdigest()
        pinned = f"FROM {busybox_image}\nADD --checksum=sha256:{digest} {base}/data.txt /p\n"
        _build(distill, ctx, pinned)
        asked = len(answered)
        _, log = _build(distill, ctx, pinned)
        assert len(answered) == asked and "CACHED" in log


def test_a_cached_add_of_a_git_repository_clones_nothing(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    served, ctx = tmp_path / "served", tmp_path / "ctx"
    served.mkdir()
    ctx.mkdir()
    bare = bare_repo(served, "repo.git", {"a.txt": f"one {tmp_path.name}\n"})
    with http_server("127.0.0.1", served) as (base, asked):
        dockerfile = f"FROM {busybox_image}\nADD {base}/repo.git#main /src\n"
        first, log = _build(distill, ctx, dockerfile)
        assert any("/objects/" in p for p in asked) and "CACHED" not in log
        before = len(asked)
        again, log = _build(distill, ctx, dockerfile)
        assert again == first and "CACHED" in log
        assert asked[before:] and not any("/objects/" in p for p in asked[before:]), \
            asked[before:]                                # the refs asked, no object
        # a new commit on main: the step runs and adds it
        work = tmp_path / "work"
        git(tmp_path, "clone", "-q", str(bare), str(work))
        (work / "a.txt").write_text("two\n")
        git(work, "commit", "-q", "-am", "two")
        git(work, "push", "-q", "origin", "main")
        git(bare, "update-server-info")
        changed, log = _build(distill, ctx, dockerfile)
        assert changed != first and "CACHED" not in log
