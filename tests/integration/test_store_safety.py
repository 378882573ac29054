"""The store survives concurrent builds and a build killed with SIGKILL.

The store is an OCI image layout (blobs/sha256, index.json), so the checks are those of
any reader: validate_layout, skopeo for every tagged name, every blob hashing to its name.
Each test uses its own store so that what it finds is its own doing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from distill.builder.secrets import private_tmp
from distill.oci.reference import normalize_name, normalize_reference
from tests.conftest import DISTILL, RunDistill
from tests.helpers.oci_validate import validate_layout
from tests.helpers.readback import skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

REF_NAME = "org.opencontainers.image.ref.name"


# -- what a consistent store looks like ---------------------------------------------------

def _blobs_hash_to_their_names(root: Path) -> int:
    blob_dir = root / "blobs" / "sha256"
    count = 0
    for path in blob_dir.iterdir():
        assert path.is_file() and not path.is_symlink(), f"unexpected entry {path}"
        assert len(path.name) == 64 and all(c in "0123456789abcdef" for c in path.name), \
            f"stray file in blobs/sha256: {path.name}"
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == path.name, f"blob {path.name} hashes to {h.hexdigest()}"
        count += 1
    return count


def _tagged(root: Path) -> dict[str, str]:
    """The store's tags as Docker shows them ('same:2' for docker.io/library/same:2)."""
    index = json.loads((root / "index.json").read_text())
    names = [m["annotations"][REF_NAME] for m in index["manifests"]]
    assert len(names) == len(set(names)), f"a name is tagged twice: {names}"
    return {normalize_reference(m["annotations"][REF_NAME]).familiar: m["digest"]
            for m in index["manifests"]}


def assert_store_consistent(root: Path) -> dict[str, str]:
    """validate_layout, skopeo reads every tagged image, every blob is what it claims."""
    validate_layout(root)
    tagged = _tagged(root)
    for name, digest in tagged.items():
        assert skopeo_inspect(root, normalize_name(name))["manifest_digest"] == digest, name
    assert _blobs_hash_to_their_names(root) > 0
    return tagged


def _mounts_under(root: Path, *, everywhere: bool = True) -> list[str]:
    """Mount points under root in our mount table and, with everywhere, in every process's
    (distill mounts in a private mount namespace of its own)."""
    prefix = str(root)
    found = []
    tables = [Path("/proc/mounts")]
    if everywhere:
        tables += list(Path("/proc").glob("[0-9]*/mountinfo"))
    for table in tables:
        try:
            lines = table.read_text().splitlines()
        except OSError:
            continue  # the process went away
        for line in lines:
            fields = line.split()
            point = fields[1] if table.name == "mounts" else fields[4]
            point = point.encode().decode("unicode_escape")  # \040 and friends
            if point == prefix or point.startswith(prefix + "/"):
                found.append(f"{table}: {point}")
    return found


def _live_processes(match: Callable[[list[str]], bool]) -> list[int]:
    """Pids of live (non-zombie) processes whose argv satisfies match."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        if words and match(words):  # zombies have an empty cmdline
            pids.append(int(proc.name))
    return pids


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _start(root: Path, *args: str, stderr: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DISTILL_ROOT": str(root)}
    return subprocess.Popen([DISTILL, *args], env=env, stdout=subprocess.PIPE,
                            stderr=open(stderr, "wb") if stderr else subprocess.PIPE)


def _fresh_store(distill: RunDistill, busybox_tar: Path, root: Path) -> Path:
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    return root


# -- concurrent builds ------------------------------------------------------------------

DOCKERFILE_A = """\
FROM busybox
COPY data.txt /data.txt
RUN sleep 1 && cat /data.txt > /copy
COPY data.txt /etc/data.txt
"""

DOCKERFILE_B = """\
FROM busybox
RUN sleep 1 && echo b > /b
COPY data.txt /data.txt
"""


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_builds_into_one_store(distill: RunDistill, busybox_tar: Path,
                                          tmp_path: Path, round_: int) -> None:
    """Identical and different Dockerfiles at once, some racing for the same tag.

    A fresh store each round, so that the busybox snapshot is unpacked by the racers.
    """
    root = _fresh_store(distill, busybox_tar, tmp_path / "store")
    contexts = {}
    for key, dockerfile in (("a", DOCKERFILE_A), ("b", DOCKERFILE_B)):
        ctx = tmp_path / key
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        (ctx / "data.txt").write_text(f"data for {key}\n")
        contexts[key] = ctx
    jobs = [("a", "same:1"), ("a", "same:2"), ("b", "other:1"), ("a", "race:x"), ("b", "race:x")]
    procs = [_start(root, "build", "--progress", "quiet", "-t", tag, str(contexts[key]))
             for key, tag in jobs]
    digests = {}
    for (key, tag), proc in zip(jobs, procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"build of {key} as {tag} failed:\n{err.decode()}"
        assert b"Traceback" not in err
        digests[(key, tag)] = out.decode().strip().splitlines()[-1]

    tagged = assert_store_consistent(root)
    assert set(tagged) == {"busybox:latest", "same:1", "same:2", "other:1", "race:x"}
    assert tagged["same:1"] == digests[("a", "same:1")]
    assert tagged["same:2"] == digests[("a", "same:2")]
    assert tagged["other:1"] == digests[("b", "other:1")]
    assert tagged["race:x"] in (digests[("a", "race:x")], digests[("b", "race:x")])

    listing = distill("images", root=root).stdout
    for name in tagged:
        assert name in listing

    for name, expect in (("same:1", "data for a\n"), ("other:1", "data for b\n")):
        rootfs = umoci_unpack(root, normalize_name(name), tmp_path / f"bundle-{name}")
        assert (rootfs / "data.txt").read_text() == expect
    assert (umoci_unpack(root, normalize_name("same:2"), tmp_path / "b2") / "copy").read_text() == "data for a\n"

    # The snapshots the racers left behind serve a following build correctly.
    follow = tmp_path / "follow"
    follow.mkdir()
    (follow / "Dockerfile").write_text(
        "FROM same:1\nRUN cat /copy /etc/data.txt > /both\n"
        "FROM other:1\nCOPY --from=0 /both /both\nRUN cat /b >> /both\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(follow), root=root)
    assert (out / "both").read_text() == "data for a\ndata for a\nb\n"
    assert _mounts_under(root) == []


def test_concurrent_builds_of_one_dockerfile_share_layers(distill: RunDistill,
                                                          busybox_tar: Path,
                                                          tmp_path: Path) -> None:
    """COPY-only steps give identical layers: racers commit the same blob and snapshot."""
    root = _fresh_store(distill, busybox_tar, tmp_path / "store")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY data.txt /data.txt\n"
                                    "COPY data.txt /again.txt\n")
    (ctx / "data.txt").write_text("shared\n")
    env = {**os.environ, "DISTILL_ROOT": str(root), "SOURCE_DATE_EPOCH": "0"}
    procs = [subprocess.Popen([DISTILL, "build", "--progress", "quiet", "-t", f"twin:{i}",
                               str(ctx)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i in range(4)]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()
    digests = {out.decode().strip() for out, _ in results}
    assert len(digests) == 1, digests
    tagged = assert_store_consistent(root)
    assert {tagged[f"twin:{i}"] for i in range(4)} == digests
    layers = skopeo_inspect(root, normalize_name("twin:0"))["manifest"]["layers"]
    assert len(layers) == 3
    snapshots = list((root / "snapshots").iterdir())
    assert len(snapshots) == 3, "one snapshot per distinct layer, whoever won the race"


# -- a build killed mid-RUN -------------------------------------------------------------

KILL_DOCKERFILE = """\
FROM busybox
COPY data.txt /data.txt
RUN echo before > /before
ARG NAP=37
RUN --mount=type=secret,id=tok,target=/tok sleep $NAP && echo slept > /slept
"""


def _is_this_sandbox(argv: list[str]) -> bool:
    """bubblewrap running KILL_DOCKERFILE's sleeping RUN (its rootfs is a view under /run)."""
    return bool(argv) and argv[0].endswith("bwrap") and \
        "sleep $NAP && echo slept > /slept" in argv


def test_sigkill_mid_run_leaves_store_consistent(distill: RunDistill, busybox_tar: Path,
                                                 tmp_path: Path) -> None:
    root = _fresh_store(distill, busybox_tar, tmp_path / "store")
    distill("build", "-t", "before:1", str(busybox_ctx(tmp_path)), root=root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(KILL_DOCKERFILE)
    (ctx / "data.txt").write_text("data\n")
    (tmp_path / "tok").write_text("kill-test-secret\n")
    stderr = tmp_path / "stderr"
    proc = _start(root, "build", "--progress", "plain", "--secret", f"id=tok,src={tmp_path}/tok",
                  "-t", "killed:1", str(ctx), stderr=stderr)
    try:
        _wait_for(lambda: b"sleep $NAP &&" in stderr.read_bytes() or proc.poll() is not None,
                  60, "the RUN sleep step to start")
        assert proc.poll() is None, stderr.read_text()

        def sleeping() -> list[int]:
            return _live_processes(lambda argv: argv == ["sleep", "37"])

        _wait_for(lambda: bool(sleeping()), 30, "`sleep 37` to run in the sandbox")
        sandboxes = _live_processes(_is_this_sandbox)
        assert sandboxes, "bubblewrap runs the RUN step"
        networks = [pid for pid in _live_processes(lambda argv: argv[0].endswith("pasta"))
                    if _parent(pid) == proc.pid]
        assert networks, "pasta serves the RUN's network, as distill's child"
        assert _mounts_under(root, everywhere=False) == [], \
            "overlay mounts must stay in distill's own mount namespace"
        assert _mounts_under(root), "the RUN's overlay is mounted (in distill's namespace)"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The sandbox dies with distill, and the mount namespace with it.
    _wait_for(lambda: not _live_processes(_is_this_sandbox),
              15, "bubblewrap to exit after distill was killed")
    _wait_for(lambda: not _live_processes(lambda argv: argv == ["sleep", "37"]), 15,
              "the RUN's process to be killed")
    _wait_for(lambda: not any(Path(f"/proc/{pid}/cmdline").exists() and
                              _parent(pid) in (proc.pid, 1) for pid in networks), 15,
              "pasta to die with distill (setpriv --pdeathsig)")
    assert _mounts_under(root) == []
    # Nothing runs after SIGKILL: the secret written for the RUN and the directory its
    # root was mounted under stay, named for the dead process...
    left = _owned_by(proc.pid)
    assert any(p.name.startswith("distill-secret-") for p in left), left
    assert any(p.name.startswith("distill-run-") for p in left), left

    tagged = assert_store_consistent(root)
    assert "killed:1" not in tagged
    assert set(tagged) == {"busybox:latest", "before:1"}

    # A following build in the same store succeeds, reusing the finished steps.
    after = distill("build", "--build-arg", "NAP=0", "-t", "killed:1", str(ctx), root=root)
    assert after.stderr.count("CACHED") >= 2, after.stderr
    tagged = assert_store_consistent(root)
    assert "killed:1" in tagged
    rootfs = umoci_unpack(root, normalize_name("killed:1"), tmp_path / "bundle")
    assert (rootfs / "before").read_text() == "before\n"
    assert (rootfs / "slept").read_text() == "slept\n"
    assert _mounts_under(root) == []
    # ... until the next build removes them.
    assert _owned_by(proc.pid) == []


def _owned_by(pid: int) -> list[Path]:
    """Temporary directories of the process ``pid`` (see distill.owned)."""
    return [path for parent in (Path(private_tmp()), Path("/run")) for path in parent.iterdir()
            if path.name.startswith(("distill-secret-", "distill-run-"))
            and path.name.split("-")[2] == str(pid)]


def busybox_ctx(tmp_path: Path) -> Path:
    """A context whose Dockerfile only names busybox (tags it a second time)."""
    ctx = tmp_path / "plain-ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo plain > /plain\n")
    return ctx
