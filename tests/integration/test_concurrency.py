"""Many distill processes on one store at once: builds, pulls, bases and a prune loop.

Eight builds run at once (twice over) beside loops of ``distill prune``, of pulls from a
registry on 127.0.0.1 and of ``distill base static`` (from a lock); each image must be exactly what the same build makes alone on a
store of its own (SOURCE_DATE_EPOCH makes builds reproducible, so equal digests mean
equal images), and the store must verify afterwards. Cache mounts shared between
concurrent builds follow their ``sharing=`` mode."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from distill.oci.reference import normalize_name
from tests.conftest import DISTILL
from tests.helpers.distroless import printed_digest
from tests.helpers.registry import RegistryServer, unique_repo

pytestmark = pytest.mark.integration

BUILDS = 8

DOCKERFILE = """\
FROM busybox AS deps
ARG N
RUN mkdir -p /out && seq 1 $((N * 1000)) > /out/numbers && echo "deps $N" > /out/deps

FROM busybox AS tool
ARG N
COPY shared/ /shared/
RUN cat /shared/* > /tool && echo "tool $N" >> /tool

FROM busybox
ARG N
COPY --from=deps /out/ /app/
COPY --from=tool /tool /app/tool
RUN --mount=type=cache,target=/cache,id=common,sharing=shared \\
    wc -l /app/numbers > /app/count && echo "final $N" > /app/final
"""


def _project(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "shared").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for i in range(10):
        (ctx / "shared" / f"part{i}").write_text(f"part {i}\n")
    for path in ctx.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    return ctx


def _run(store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTILL_ROOT": str(store), "SOURCE_DATE_EPOCH": "0"}
    return subprocess.run([DISTILL, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _build(store: Path, ctx: Path, n: int) -> str:
    """Build variant ``n``; its image digest."""
    out = _ok(_run(store, "build", "--progress", "plain", "--build-arg", f"N={n}",
                   "-t", f"app{n}:latest", str(ctx)))
    return out.split()[-1]


def test_eight_builds_at_once_beside_prune_and_pulls(
        tmp_path: Path, busybox_tar: Path, busybox_image: str, store_root: Path,
        registry_http: RegistryServer) -> None:
    ctx = _project(tmp_path)
    alone = tmp_path / "alone"
    shared = tmp_path / "shared"
    for store in (alone, shared):
        _ok(_run(store, "import", str(busybox_tar), "busybox:latest"))
    # one at a time, each on a fresh store's state: the reference
    expected = {n: _build(alone, ctx, n) for n in range(BUILDS)}
    assert len(set(expected.values())) == BUILDS
    lock = tmp_path / "static.lock.json"
    base = printed_digest(_ok(_run(alone, "base", "static", "-t", "static:ref",
                                   "--write-lock", str(lock))), "static:ref")

    repo = unique_repo("concurrent")
    ref = registry_http.push_layout(store_root, normalize_name(busybox_image), f"{repo}:1")
    stop = threading.Event()
    side: list[str] = []        # what the prune and pull loops saw go wrong

    def loop(what: str, args: Callable[[int], list[str]],
             check: Callable[[int, str], str | None] = lambda _round, _out: None) -> int:
        """Run ``distill ARGS(round)`` until the builds are done; its rounds. What goes
        wrong (an exit code, or what ``check`` says of stdout) is kept in ``side``."""
        rounds = 0
        while not stop.is_set():
            proc = _run(shared, *args(rounds))
            problem = proc.stderr if proc.returncode != 0 else check(rounds, proc.stdout)
            if problem:
                side.append(f"{what}: {problem}")
            rounds += 1
        return rounds

    def same_base(round_: int, stdout: str) -> str | None:
        digest = printed_digest(stdout, f"static:{round_}")
        return None if digest == base else f"{stdout} is not {base}"

    with ThreadPoolExecutor(max_workers=BUILDS + 3) as pool:
        pruning = pool.submit(loop, "prune", lambda _: ["prune", "-f"])
        pulling = pool.submit(loop, "pull", lambda _: ["pull", ref])
        basing = pool.submit(loop, "base", lambda r: ["base", "static", "-t", f"static:{r}",
                                                       "--lock", str(lock)], same_base)
        try:
            for attempt in range(2):        # the second time, some steps are cached
                got = dict(zip(range(BUILDS), pool.map(
                    lambda n: _build(shared, ctx, n), range(BUILDS))))
                assert got == expected, f"attempt {attempt}"
        finally:
            stop.set()
        prunes, pulls, bases = pruning.result(), pulling.result(), basing.result()
    print(f"\nconcurrency: {2 * BUILDS} builds, {prunes} prunes, {pulls} pulls, {bases} "
          "bases at once")
    assert not side, "\n".join(side[:5])
    assert prunes > 0 and pulls > 0 and bases > 0
    verify = _ok(_run(shared, "store", "verify"))
    assert verify.splitlines()[-1] == "store is consistent", verify
    # and every image is whole: exported again after a last prune
    _ok(_run(shared, "prune", "-f"))
    for n in range(BUILDS):
        out = tmp_path / f"out{n}"
        _ok(_run(shared, "build", "--progress", "plain", "--build-arg", f"N={n}",
                 "-o", f"type=local,dest={out}", str(ctx)))
        assert (out / "app" / "final").read_text() == f"final {n}\n"
        assert (out / "app" / "count").read_text().split()[0] == str(n * 1000)


# -- cache mounts shared by concurrent builds ------------------------------------------

def _cache_build(store: Path, tmp_path: Path, sharing: str, who: str) -> Path:
    """A build whose RUN uses cache ``id=c-SHARING``: it leaves a marker there, waits a
    moment, and records what it saw; the output is the record."""
    ctx = tmp_path / f"ctx-{sharing}-{who}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        f"ARG WHO={who}\n"
        f"RUN --mount=type=cache,id=c-{sharing},target=/c,sharing={sharing} "
        "echo \"start $WHO\" >> /c/log && touch /c/$WHO && "
        # wait (up to 4 s) for the other build's marker; shared sees it, others do not
        "for i in $(seq 1 16); do [ $(ls /c | grep -c -v log) -ge 2 ] && break; "
        "sleep 0.25; done; ls /c > /seen; "
        "echo \"end $WHO\" >> /c/log; cp /c/log /log\n")
    out = tmp_path / f"out-{sharing}-{who}"
    _ok(_run(store, "build", "--progress", "plain", "-o", f"type=local,dest={out}",
             str(ctx)))
    return out


def _two_at_once(store: Path, tmp_path: Path, sharing: str) -> tuple[Path, Path]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(_cache_build, store, tmp_path, sharing, "a")
        time.sleep(0.2)
        b = pool.submit(_cache_build, store, tmp_path, sharing, "b")
        return a.result(), b.result()


@pytest.fixture
def cache_store(tmp_path: Path, busybox_tar: Path) -> Path:
    store = tmp_path / "store"
    _ok(_run(store, "import", str(busybox_tar), "busybox:latest"))
    return store


def test_cache_mount_sharing_shared_sees_the_other_build(cache_store: Path,
                                                         tmp_path: Path) -> None:
    a, b = _two_at_once(cache_store, tmp_path, "shared")
    for out in (a, b):
        assert (out / "seen").read_text().split() == ["a", "b", "log"]


def test_cache_mount_sharing_private_gives_each_build_its_own(cache_store: Path,
                                                               tmp_path: Path) -> None:
    a, b = _two_at_once(cache_store, tmp_path, "private")
    assert "b" not in (a / "seen").read_text().split()
    assert "a" not in (b / "seen").read_text().split()


def test_cache_mount_sharing_locked_serializes(cache_store: Path, tmp_path: Path) -> None:
    a, b = _two_at_once(cache_store, tmp_path, "locked")
    # the second build ran after the first was done: in the log they share, one ended
    # before the other started, and the first never saw the second's marker
    first, second = sorted((a, b), key=lambda out: len((out / "log").read_text()))
    events = (second / "log").read_text().split("\n")
    assert [e.split()[0] for e in events if e] == ["start", "end", "start", "end"], events
    assert len((first / "seen").read_text().split()) == 2      # itself and the log
