"""Issue 8, finding 1, raced: a working directory that changes while the RUN starts.

distill resolves a RUN's working directory inside the rootfs before bubblewrap starts;
bubblewrap then changes into that path, while its own descriptor of the host's /proc (fd
3) is still open. Anything another process can change in between decides where the RUN
starts. A shared cache mount is such a place: another RUN (a parallel stage, or another
build on the same store) swaps ``/c/p`` between a plain directory holding ``3/`` and a
symlink to ``/proc/self/fd`` (RENAME_EXCHANGE, so one of them is always there), and the
working directory ``/c/p/3`` is checked as a directory but entered as
``/proc/self/fd/3``: the host's /proc, whose ``..`` is the host's root.

Each attempt must fail with a clean error naming /proc, or run harmlessly inside the
sandbox; the canary outside the build stays untouched and unread.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.isolation import (
    answer,
    assert_refused_or_harmless,
    build,
    canary_file,
    compile_probe,
    context,
    escape_attempt,
)
from tests.helpers.progress import without_prefixes

pytestmark = pytest.mark.integration

ATTEMPTS = 30


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_probe(tmp_path_factory.mktemp("probe"))


@pytest.fixture
def canary() -> Iterator[Path]:
    with canary_file() as path:
        yield path


def test_workdir_swapped_in_a_shared_cache_mount_never_leaves_the_sandbox(
        distill: RunDistill, busybox_image: str, store_root: Path, probe: Path,
        canary: Path, tmp_path: Path) -> None:
    """The working directory is checked and then entered by path: a concurrent RUN
    sharing the cache mount must not be able to turn it into /proc/self/fd/3 between the
    two."""
    mount = f"--mount=type=cache,target=/c,id=isolation-race-{uuid.uuid4().hex},sharing=shared"
    flipper_ctx = context(tmp_path, probe, f"RUN --network=none {mount} /probe flip /c\n",
                          name="flipper")
    flipper = subprocess.Popen(
        [DISTILL, "build", "--no-cache", "--progress", "plain", str(flipper_ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DISTILL_ROOT": str(store_root)})
    assert flipper.stderr is not None
    try:
        for line in flipper.stderr:
            if without_prefixes(line).strip() == "flipping":   # "#2 0.031 flipping"
                break
        else:
            raise AssertionError(f"the flipping RUN did not start: {flipper.communicate()}")
        for attempt in range(ATTEMPTS):
            ctx = context(tmp_path, probe, f"WORKDIR /c/p/3\nRUN --network=none {mount} "
                          f"echo attempt {attempt}; "
                          + escape_attempt(canary).removeprefix("RUN "),
                          name=f"attempt{attempt}")
            out = tmp_path / f"out{attempt}"
            # Refused: resolved into /proc, or (as a directory) inside the shared cache mount.
            assert_refused_or_harmless(build(distill, ctx, out=out), canary, out,
                                       ("/proc", "inside the cache mount /c"))
    finally:
        stop = context(tmp_path, probe, f"RUN --network=none {mount} touch /c/stop\n",
                       name="stop")
        if build(distill, stop, "--no-cache").returncode != 0:
            flipper.kill()
        stdout, stderr = flipper.communicate()
    assert flipper.returncode == 0, stdout + stderr
    assert int(answer(stderr, "flips")) > 0   # the swapping went on during the attempts
