"""File times in layers (issue 10): sub-second times written by RUN, COPY and ADD reach
the image as the steps saw them (read back with umoci); SOURCE_DATE_EPOCH (environment,
--build-arg or a global ARG default) clamps them, in the layer and in what later steps
see, and makes builds on two stores at two times the same image."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.clock import next_second
from tests.helpers.readback import umoci_unpack

pytestmark = pytest.mark.integration

CONTEXT_NS = 1577934245_123456789          # 2020-01-02T03:04:05.123456789Z
EPOCH = 1600000000                          # 2020-09-13T12:26:40Z


def _layout(distill: RunDistill, ctx: Path, out: Path, *args: str,
            root: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = distill("build", "--progress", "plain", "--output",
                   f"type=oci,dest={out},tar=false", "-t", "times:latest", *args, str(ctx),
                   root=root, env=env)
    return proc.stdout.strip().splitlines()[-1]


def _rootfs(layout: Path, tmp_path: Path) -> Path:
    return umoci_unpack(layout, "latest", tmp_path / f"bundle-{uuid.uuid4().hex[:8]}")


def _busybox_time(ns: int) -> str:
    """A time as ``busybox stat -c %y`` prints it (in UTC)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d} +0000"


def _context(tmp_path: Path, base: str, body: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text(f"{tmp_path.name}\n")
    os.utime(ctx / "f", ns=(CONTEXT_NS, CONTEXT_NS))
    (ctx / "Dockerfile").write_text(f"FROM {base}\n" + body)
    return ctx


def test_sub_second_times_of_run_copy_and_add_reach_the_image(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, busybox_image,
                   "COPY f /copied\nADD f /added\n"
                   "RUN busybox touch /ran && busybox stat -c %y /ran > /ran.seen\n")
    _layout(distill, ctx, tmp_path / "layout")
    rootfs = _rootfs(tmp_path / "layout", tmp_path)
    assert os.lstat(rootfs / "copied").st_mtime_ns == CONTEXT_NS
    assert os.lstat(rootfs / "added").st_mtime_ns == CONTEXT_NS
    ran = os.lstat(rootfs / "ran").st_mtime_ns
    assert _busybox_time(ran) == (rootfs / "ran.seen").read_text().strip()
    assert ran % 1_000_000_000                   # (a whole second by chance: rerun)


def test_source_date_epoch_clamps_what_the_steps_see_and_the_image_holds(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """A tool that records file times at build time (uv, pip) and checks them when the
    app starts must find them unchanged: the clamp applies to the snapshot later steps
    run on, not only to the layer tar."""
    ctx = _context(tmp_path, busybox_image,
                   "RUN busybox mkdir /app && busybox echo {} > /app/pyproject\n"
                   "COPY f /app/\n"
                   "RUN busybox stat -c %y /app/pyproject /app/f > /app/recorded\n")
    _layout(distill, ctx, tmp_path / "layout", "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")
    rootfs = _rootfs(tmp_path / "layout", tmp_path)
    recorded = (rootfs / "app/recorded").read_text().split("\n")
    assert recorded[0] == _busybox_time(os.lstat(rootfs / "app/pyproject").st_mtime_ns)
    assert recorded[1] == _busybox_time(os.lstat(rootfs / "app/f").st_mtime_ns)
    # newer than the epoch: clamped to it; older (the context file): kept, to the ns
    assert os.lstat(rootfs / "app/pyproject").st_mtime_ns == EPOCH * 1_000_000_000
    assert os.lstat(rootfs / "app/f").st_mtime_ns == CONTEXT_NS
    assert os.lstat(rootfs / "app/recorded").st_mtime_ns == EPOCH * 1_000_000_000
    config = json.loads(subprocess.run(
        ["skopeo", "inspect", "--config", "--raw", f"oci:{tmp_path / 'layout'}:latest"],
        capture_output=True, check=True).stdout)
    assert config["created"] == "2020-09-13T12:26:40Z"
    assert {h["created"] for h in config["history"][-3:]} == {"2020-09-13T12:26:40Z"}


def test_two_stores_at_two_times_make_the_same_image(
        distill: RunDistill, busybox_image: str, busybox_tar: Path,
        tmp_path: Path) -> None:
    """SOURCE_DATE_EPOCH from the environment, from --build-arg, or as the Dockerfile's
    own global ARG default: the same digest on fresh stores, contexts in other
    directories with other file times (a checkout's, newer than the epoch), built at
    other times."""
    body = ("RUN busybox mkdir /out && busybox echo built > /out/app\n"
            "FROM {base}\nCOPY --from=0 /out /out\nCOPY f /\n"
            "RUN busybox cat /out/app /f > /both\n")
    digests = []
    for n, how in enumerate(("env", "build-arg", "global-arg")):
        work = tmp_path / how
        work.mkdir()
        root = work / "store"
        distill("import", str(busybox_tar), busybox_image, root=root)
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "f").write_text("same\n")        # written now: newer than the epoch
        os.utime(ctx / "f", ns=(time.time_ns() + n * 1_234_567, time.time_ns() + n * 1_234_567))
        head = f"ARG SOURCE_DATE_EPOCH={EPOCH}\n" if how == "global-arg" else ""
        (ctx / "Dockerfile").write_text(head + f"FROM {busybox_image}\n" +
                                        body.format(base=busybox_image))
        args = ["--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}"] if how == "build-arg" else []
        env = {"SOURCE_DATE_EPOCH": str(EPOCH)} if how == "env" else {}
        digests.append(_layout(distill, ctx, work / "layout", *args, root=root, env=env))
        next_second()                            # another second on the clock
    assert len(set(digests)) == 1, digests


def test_an_epoch_that_is_no_number_is_a_clear_error(distill: RunDistill, busybox_image: str,
                                                     tmp_path: Path) -> None:
    ctx = _context(tmp_path, busybox_image, "COPY f /\n")
    proc = distill("build", "--build-arg", "SOURCE_DATE_EPOCH=yesterday", str(ctx),
                   check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "SOURCE_DATE_EPOCH='yesterday' is not a number of seconds" in proc.stderr


def test_a_stage_that_declares_the_epoch_gives_it_to_its_runs(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """As BuildKit: SOURCE_DATE_EPOCH (the caller's variable, passed on as the build arg
    buildx makes of it) reaches RUN in a stage that declares ``ARG SOURCE_DATE_EPOCH``,
    so that tools write reproducible files (Python then writes hash-checked .pyc); a
    stage that does not declare it does not see it."""
    ctx = _context(tmp_path, busybox_image,
                   "RUN busybox sh -c 'echo \"[$SOURCE_DATE_EPOCH]\" > /undeclared'\n"
                   "ARG SOURCE_DATE_EPOCH\n"
                   "RUN busybox sh -c 'echo \"[$SOURCE_DATE_EPOCH]\" > /declared'\n")
    _layout(distill, ctx, tmp_path / "layout", env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    rootfs = _rootfs(tmp_path / "layout", tmp_path)
    assert (rootfs / "declared").read_text() == f"[{EPOCH}]\n"
    assert (rootfs / "undeclared").read_text() == "[]\n"
