"""A full disk, and a read-only one, give one clear line and leave the store whole (issue 13).

"Disk full and I/O errors end with one clear line naming the path and what was being
written; no partial blob is ever visible under its digest." Each test mounts a small tmpfs
of its own and puts there either the store (``DISTILL_ROOT``) or an output; afterwards the
tmpfs is made bigger and the same command must succeed.

Sizes: the busybox base takes about 1.1 MB of store once imported and 3.1 MB once a build
has unpacked it (its snapshot); random bytes do not compress, so a RUN writing N bytes
needs N in its upper directory and N again for its layer blob.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunDistill

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")]

Mount = Callable[[Path, str], Path]


@pytest.fixture
def small_tmpfs() -> Iterator[Mount]:
    """``mount(dir, size)``: a tmpfs of ``size`` ("8m") on ``dir``, unmounted at the end."""
    mounted: list[Path] = []

    def mount(where: Path, size: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(where)], check=True)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _resize(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def _context(tmp_path: Path, dockerfile: str, name: str = "ctx") -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _one_clear_error(proc: subprocess.CompletedProcess[str], *must_say: str) -> str:
    """Exit code 1, one ``error:`` line saying each of ``must_say``, one hint, no
    traceback; the error line."""
    err = proc.stderr
    assert proc.returncode == 1, f"exit code {proc.returncode}:\n{proc.stdout}\n{err}"
    for bad in ("Traceback", "Exception ignored", "Error in atexit"):
        assert bad not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert len([line for line in err.splitlines() if line.startswith("hint:")]) == 1, err
    for words in must_say:
        assert words in errors[0], err
    return errors[0]


def _store_whole(distill: RunDistill, store: Path) -> None:
    """``store verify`` passes with nothing to report, no temp file is left, and every
    blob hashes to its name (none was committed half-written)."""
    verify = distill("store", "verify", root=store, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.splitlines()[-1:] == ["store is consistent"], verify.stdout
    left = [p for p in (store / "tmp").rglob("*") if not p.is_dir()]
    assert left == [], f"temp files left in the store: {left}"
    for blob in (store / "blobs" / "sha256").iterdir():
        with open(blob, "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == blob.name, \
                f"blob {blob.name} is not what its name says"


# -- the store's filesystem fills up --------------------------------------------------------

def test_run_that_fills_the_store(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                                  small_tmpfs: Mount) -> None:
    """The RUN's own program fails (its upper directory is in the store): distill's error
    is the RUN's, with the hint that the store's filesystem is full."""
    disk = small_tmpfs(tmp_path / "disk", "8m")
    store = disk / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    ctx = _context(tmp_path, "FROM busybox\nRUN head -c 9000000 /dev/urandom > /big\n")
    proc = distill("build", "--progress", "plain", "-t", "big:1", str(ctx), root=store,
                   check=False)
    line = _one_clear_error(proc, "did not complete successfully")
    assert "RUN head -c 9000000" in proc.stderr, line
    assert f"the filesystem holding distill's store ({store}) has only" in proc.stderr
    _store_whole(distill, store)

    _resize(disk, "32m")
    distill("build", "-t", "big:1", str(ctx), root=store)
    _store_whole(distill, store)


def test_layer_blob_that_does_not_fit(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                                      small_tmpfs: Mount) -> None:
    """The RUN fits, its layer blob does not: one line naming the store and what was being
    written, and no blob half-written (nor any under a wrong digest)."""
    disk = small_tmpfs(tmp_path / "disk", "8m")
    store = disk / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    # 3.1 MB of base + 3.2 MB written by the RUN fit in 8 MB; its 3.2 MB blob does not
    ctx = _context(tmp_path, "FROM busybox\nRUN head -c 3200000 /dev/urandom > /big\n")
    proc = distill("build", "--progress", "plain", "-t", "big:1", str(ctx), root=store,
                   check=False)
    line = _one_clear_error(proc)
    assert line.endswith(f"cannot write a layer blob into the store at {store}: "
                         "No space left on device"), proc.stderr
    assert "big:1" not in distill("images", root=store).stdout
    _store_whole(distill, store)

    _resize(disk, "32m")
    distill("build", "-t", "big:1", str(ctx), root=store)
    _store_whole(distill, store)
    assert "big:1" in distill("images", root=store).stdout


def test_import_of_a_base_too_big(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                                  small_tmpfs: Mount) -> None:
    disk = small_tmpfs(tmp_path / "disk", "1m")   # busybox's blob alone is 1.2 MB
    store = disk / "store"
    proc = distill("import", str(busybox_tar), "busybox:latest", root=store, check=False)
    line = _one_clear_error(proc)
    assert line.endswith(f"into the store at {store}: No space left on device"), proc.stderr
    assert "cannot write" in line, proc.stderr
    _store_whole(distill, store)
    assert list((store / "blobs" / "sha256").iterdir()) == []

    _resize(disk, "16m")
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    _store_whole(distill, store)


def test_store_made_on_a_full_filesystem_names_it(distill: RunDistill, busybox_tar: Path,
                                                  tmp_path: Path, small_tmpfs: Mount) -> None:
    """Regression: a store set up on a full filesystem said only 'distill could not go
    on: No space left on device' (the failing close names no file)."""
    disk = small_tmpfs(tmp_path / "disk", "1m")
    filler = disk / "filler"
    with open(filler, "wb") as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    store = disk / "store"
    proc = distill("import", str(busybox_tar), "busybox:latest", root=store, check=False)
    line = _one_clear_error(proc, "No space left on device")
    assert str(store) in line, proc.stderr


# -- an output's filesystem fills up ----------------------------------------------------------

@pytest.fixture(scope="module")
def roomy_store(distill: RunDistill, busybox_tar: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store on the big disk, with busybox in it."""
    store = tmp_path_factory.mktemp("roomy") / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    return store


@pytest.mark.parametrize("output", ["type=oci,dest={}/image.tar",
                                    "type=docker,dest={}/image.tar",
                                    "type=oci,tar=false,dest={}/layout",
                                    "type=local,dest={}/rootfs"],
                         ids=["oci-tar", "docker-tar", "oci-dir", "local"])
def test_output_onto_a_full_filesystem(distill: RunDistill, roomy_store: Path, tmp_path: Path,
                                       small_tmpfs: Mount, output: str) -> None:
    disk = small_tmpfs(tmp_path / "out", "1m")    # busybox: 1.2 MB compressed, 2 MB unpacked
    spec = output.format(disk)
    dest = Path(spec.rsplit("dest=", 1)[1])
    ctx = _context(tmp_path, "FROM busybox\nRUN echo hi > /hi\n")
    proc = distill("build", "--progress", "plain", "-o", spec, str(ctx), root=roomy_store,
                   check=False)
    line = _one_clear_error(proc)
    assert line == f"error: cannot write the output {dest}: No space left on device", \
        proc.stderr
    # the hint is about the output's filesystem: pruning the store would not help
    assert f"hint: free space on the filesystem holding {dest} (df -h)" in proc.stderr
    assert "prune" not in proc.stderr
    if dest.suffix == ".tar":
        # a tar is written beside its destination and renamed once whole: nothing is left
        assert sorted(p.name for p in disk.iterdir()) == [], list(disk.iterdir())
    # (a directory output is written in place: what was written before the disk filled
    # stays, as with BuildKit's local exporter)
    _store_whole(distill, roomy_store)

    _resize(disk, "16m")
    distill("build", "--progress", "plain", "-o", spec, str(ctx), root=roomy_store)
    if dest.suffix == ".tar":
        assert dest.stat().st_size > 1_000_000
    elif "local" in spec:
        assert (dest / "hi").read_text() == "hi\n"
    else:
        assert (dest / "index.json").is_file()
    _store_whole(distill, roomy_store)


# -- a read-only store ------------------------------------------------------------------------

def test_read_only_store(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                         small_tmpfs: Mount) -> None:
    disk = small_tmpfs(tmp_path / "disk", "16m")
    store = disk / "store"
    distill("import", str(busybox_tar), "busybox:latest", root=store)
    ctx = _context(tmp_path, "FROM busybox\nRUN echo hi > /hi\n")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    try:
        proc = distill("build", "--progress", "plain", "-t", "ro:1", str(ctx), root=store,
                       check=False)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    line = _one_clear_error(proc, str(store), "Read-only file system")
    assert "store" in line, proc.stderr
    _store_whole(distill, store)
    distill("build", "-t", "ro:1", str(ctx), root=store)
    _store_whole(distill, store)
