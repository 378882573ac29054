"""The build cache is never wrong and misses only when an input changed (issue 10):
named regressions for the wrong hit and the misses a review found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.progress import parse_plain

pytestmark = pytest.mark.integration


def _build(distill: RunDistill, ctx: Path, *flags: str) -> tuple[str, str]:
    proc = distill("build", "--progress", "plain", *flags, str(ctx))
    return proc.stdout.strip().splitlines()[-1], proc.stderr


def _steps_run(log: str) -> int:
    """Steps that did work: each step's title line not followed by CACHED."""
    return sum(1 for s in parse_plain(log) if " 1/" not in s.title and s.outcome != "CACHED")


def test_copy_link_then_copy_through_a_symlink_is_not_a_cache_hit(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """COPY --link replaces a symlink at the destination; COPY writes through it. The
    key once left --link out, so the second build replayed the first's layer."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text(f"new content {tmp_path.name}\n")
    head = (f"FROM {busybox_image}\nRUN busybox mkdir -p /t && busybox ln -s /t/target /vi"
            f" && busybox echo {tmp_path.name}\n")
    (ctx / "Dockerfile").write_text(head + "COPY --link f /vi\n")
    _build(distill, ctx, "--output", f"type=local,dest={tmp_path / 'linked'}")
    assert (tmp_path / "linked/vi").is_file() and not (tmp_path / "linked/vi").is_symlink()
    (ctx / "Dockerfile").write_text(head + "COPY f /vi\n")
    _, log = _build(distill, ctx, "--output", f"type=local,dest={tmp_path / 'through'}")
    assert _steps_run(log) == 1, log              # the RUN is cached, the COPY is not
    assert (tmp_path / "through/vi").is_symlink()
    assert (tmp_path / "through/t/target").read_text() == f"new content {tmp_path.name}\n"
    _build(distill, ctx, "--no-cache", "--output", f"type=local,dest={tmp_path / 'fresh'}")
    assert (tmp_path / "fresh/vi").is_symlink()
    assert (tmp_path / "fresh/t/target").read_text() == (tmp_path / "through/t/target") \
        .read_text()


def test_times_and_ignored_files_do_not_change_a_key_but_content_and_mode_do(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/app.txt").write_text(f"app {tmp_path.name}\n")
    (ctx / ".dockerignore").write_text("src/*.log\n")
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /app/\n")
    first, log = _build(distill, ctx)
    assert _steps_run(log) == 1
    # an mtime-only touch (of the file and of the copy root) and a new ignored file
    os.utime(ctx / "src/app.txt", (1_000_000_000, 1_000_000_000))
    (ctx / "src/debug.log").write_text("ignored\n")
    os.utime(ctx, (2_000_000_000, 2_000_000_000))
    again, log = _build(distill, ctx)
    assert _steps_run(log) == 0 and again == first, log
    os.chmod(ctx / "src/app.txt", 0o600)
    by_mode, log = _build(distill, ctx)
    assert _steps_run(log) == 1 and by_mode != first
    (ctx / "src/app.txt").write_text(f"app {tmp_path.name} changed\n")
    by_content, log = _build(distill, ctx)
    assert _steps_run(log) == 1 and by_content not in (first, by_mode)


def test_steps_that_change_nothing_are_cached(distill: RunDistill, busybox_image: str,
                                              tmp_path: Path) -> None:
    """RUN echo, a RUN that writes only to a cache mount, and WORKDIR of a directory the
    image has: no layer, and no run on the next build."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        f"RUN busybox echo nothing-$((6*7))-{tmp_path.name}\n"
        f"RUN --mount=type=cache,target=/cache busybox touch /cache/{tmp_path.name}\n"
        "WORKDIR /bin\n")
    first, log = _build(distill, ctx)
    assert f"nothing-42-{tmp_path.name}" in log and _steps_run(log) == 3
    again, log = _build(distill, ctx)
    assert f"nothing-42-{tmp_path.name}" not in log
    assert _steps_run(log) == 0 and again == first, log


def test_a_fully_cached_rebuild_is_the_same_image(distill: RunDistill, busybox_image: str,
                                                  tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text(f"{tmp_path.name}\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image} AS build\n"
        f"RUN busybox mkdir /out && busybox echo {tmp_path.name} > /out/x\n"
        f"FROM {busybox_image}\n"
        "COPY --from=build /out /out\nCOPY a.txt /\nRUN busybox cat /out/x /a.txt > /both\n")
    first, _ = _build(distill, ctx)
    again, log = _build(distill, ctx)
    assert _steps_run(log) == 0 and again == first, log
    meta = tmp_path / "meta.json"
    _build(distill, ctx, "--metadata-file", str(meta))
    assert json.loads(meta.read_text())["containerimage.digest"] == first


def test_an_image_holding_one_layer_twice_builds_on(distill: RunDistill, busybox_image: str,
                                                    tmp_path: Path) -> None:
    """COPY . /app/ twice makes the same layer twice (and pulled images often hold one
    empty layer several times); overlayfs refuses a lower directory given twice, so the
    third step once failed with "Too many levels of symbolic links". Found by
    test_cache_properties."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text(f"{tmp_path.name}\n")
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /app/\nCOPY . /app/\n"
                                    "RUN busybox cat /app/a.txt > /seen\n")
    _build(distill, ctx, "--output", f"type=local,dest={tmp_path / 'out'}")
    assert (tmp_path / "out/seen").read_text() == f"{tmp_path.name}\n"


def test_a_file_changed_while_copied_never_poisons_the_cache(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """The context is hashed for the key, then read again to copy: a file written in
    between once put B's bytes under A's key. Whatever the timing, a build from the cache
    must make what --no-cache makes (the raced build fails, or stores what it read)."""
    import threading

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with open(ctx / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    (ctx / "z.txt").write_text("A\n")
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /d/\n")
    (ctx / ".dockerignore").write_text(".z.tmp\n")
    stop = threading.Event()

    def flip() -> None:       # z.txt is always A or B (replaced whole), never half written
        n = 0
        while not stop.is_set():
            n += 1
            (ctx / ".z.tmp").write_text("B\n" if n % 2 else "A\n")
            os.replace(ctx / ".z.tmp", ctx / "z.txt")

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(8):   # each raced build had a 1 in 4 chance to poison A's key
            proc = distill("build", "--progress", "plain", str(ctx), check=False)
            assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
            if proc.returncode:
                assert "changed while they were copied" in proc.stderr, proc.stderr
    finally:
        stop.set()
        flipper.join()
    (ctx / "z.txt").write_text("A\n")
    out = tmp_path / "out"
    distill("build", "-q", "--output", f"type=local,dest={out}", str(ctx))
    assert (out / "d/z.txt").read_text() == "A\n"      # what the context holds now
