"""What RUN's isolation costs on cold builds: distill vs distill before isolation vs buildah.

Since 24aa4f6 and d3ba502 every RUN lives in a user namespace over idmapped layers,
with a private network through pasta and a seccomp filter. This bench times the same
cold builds (``--no-cache``) with this checkout's distill ("current"), with a distill
from before isolation ("baseline", e.g. a worktree of 4bb0edf with a venv of its own,
given by ``--baseline-distill``) and with buildah, in one run:

* ``runs``: a RUN-heavy build (generated here): a busybox base and 20 RUN steps that
  each write 200 small files and a 1 MiB file, hash them and append to a file the
  earlier steps wrote (a copy-up); no network traffic, so the time is the sandbox's
  own cost (pasta still starts for each RUN) and the layer commits.
* ``go-hello``: examples/go-hello, as bench/go_hello.py builds it (apt-get install of
  golang-go from the Debian archive inside a RUN, go build, a distroless final stage).

Each distill prepares its own bases in a store of its own, once, untimed (``distill
base debian``, ``distill base static:nonroot``, ``distill import`` of a busybox rootfs);
every timed build starts from a fresh copy of that store. buildah pulls the current
distill's bases from OCI layouts into a fresh storage per build (untimed) and builds
with ``--isolation=chroot --layers --no-cache``. Runs alternate between the builders,
in an order that rotates from one run to the next.

Each build is timed twice over: wall-clock seconds, and the CPU seconds (user +
system) of its whole process tree, which other load on a shared machine disturbs much
less (the bench is a child subreaper, so the RUN's processes under bubblewrap's init
and the pasta daemons count too). Reported are medians, the ratios current/baseline
(above 1: what isolation costs; in brackets the median of each run's own ratio) and
current/buildah (below 1: distill is faster).

    .venv/bin/python bench/isolation.py --baseline-distill PATH [--distill PATH]
        [--runs N] [--workload runs|go-hello ...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from buildah_storage import buildah_argv
from go_hello import DISTROLESS, EXAMPLE, sh

from tests.helpers.bases import write_busybox_rootfs_tar

CURRENT = str(Path(sys.executable).with_name("distill"))
BUSYBOX = "busybox:latest"
DEBIAN = "debian:bookworm"
STEPS = 20


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, wall clock
    cpu: float  # seconds of user + system CPU of the build's whole process tree


_PR_SET_CHILD_SUBREAPER = 36
#: How long descendants that outlive the build (a pasta stopping) may take to end.
_ORPHAN_GRACE = 5.0


def become_subreaper() -> None:
    """Orphaned descendants come to this process, so their CPU time is counted too:
    bubblewrap's init in a RUN's PID namespace, the RUN's processes under it, and
    pasta, which detaches itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"bench: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def timed(argv: list[str], env: dict[str, str] | None = None) -> Sample:
    """Run ``argv``; its wall time and the CPU time of every process of its tree.

    Wall time ends when ``argv`` exits. Every process reaped meanwhile (this process is
    a subreaper, see :func:`become_subreaper`) and until the tree's last orphan has
    ended adds its own and its waited-for children's CPU time."""
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=err)
        cpu, wall, status = 0.0, None, 0
        deadline = None
        while True:
            try:
                pid, st, usage = os.wait4(-1, os.WNOHANG if deadline else 0)
            except ChildProcessError:
                break
            if pid == 0:  # orphans left, none ended yet
                if time.monotonic() > deadline:  # type: ignore[operator]
                    break
                time.sleep(0.01)
                continue
            cpu += usage.ru_utime + usage.ru_stime
            if pid == proc.pid:
                wall, status = time.monotonic() - started, st
                proc.returncode = os.waitstatus_to_exitcode(st)
                deadline = time.monotonic() + _ORPHAN_GRACE
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"bench: {' '.join(argv)} failed:\n"
                     f"{err.read().decode(errors='replace')[-3000:]}")
    assert wall is not None
    return Sample(wall, cpu)


def runs_dockerfile(steps: int = STEPS) -> str:
    """A busybox build of ``steps`` RUN steps, each doing a little real file work."""
    lines = ["ARG BASE=busybox:latest", "FROM ${BASE}",
             "RUN mkdir -p /data && echo start > /data/chain"]
    for n in range(1, steps):
        d = f"/data/s{n:02d}"
        lines.append(
            f"RUN mkdir -p {d} && cd {d} && for i in $(seq 1 200); do "
            f"echo \"step {n} file $i\" > f$i; done && "
            "dd if=/dev/zero of=blob bs=64k count=16 2>/dev/null && "
            f"sha256sum f* blob > {d}.sha256 && "
            f"sha256sum {d}.sha256 >> /data/chain")
    return "\n".join(lines) + "\n"


class Workload:
    def __init__(self, name: str, context: Path, bases: tuple[str, ...], base_arg: str) -> None:
        self.name, self.context, self.bases, self.base_arg = name, context, bases, base_arg


def workloads(work: Path, names: list[str]) -> list[Workload]:
    out = []
    if "runs" in names:
        ctx = work / "ctx-runs"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(runs_dockerfile())
        out.append(Workload("runs", ctx, (BUSYBOX,), BUSYBOX))
    if "go-hello" in names:
        out.append(Workload("go-hello", EXAMPLE, (DEBIAN, DISTROLESS), DEBIAN))
    return out


class Distill:
    """One distill executable with a store of bases prepared by itself."""

    def __init__(self, name: str, exe: str, work: Path, busybox_tar: Path) -> None:
        self.name, self.exe, self.work = name, exe, work
        self.bases_root = work / f"{name}-bases"
        env = {"DISTILL_ROOT": str(self.bases_root)}
        sh([exe, "import", str(busybox_tar), BUSYBOX], env)
        sh([exe, "base", "debian", "-t", DEBIAN], env)
        sh([exe, "base", "static:nonroot", "-t", DISTROLESS], env)

    def base_ids(self) -> dict[str, str]:
        """Image ids of the bases in the store (to show both distills start alike)."""
        proc = subprocess.run([self.exe, "images"], check=False, capture_output=True, text=True,
                              env={**os.environ, "DISTILL_ROOT": str(self.bases_root)})
        return {line.split()[0]: " ".join(line.split()[1:3])
                for line in proc.stdout.splitlines()[1:] if line.strip()}

    def cold(self, load: Workload, run: int) -> Sample:
        root = self.work / f"{self.name}-{load.name}-{run}"
        # A fresh store holding only the bases, unpacked (as buildah's pull leaves it).
        sh(["cp", "-a", str(self.bases_root), str(root)])
        try:
            return timed([self.exe, "build", "--progress", "quiet", "--no-cache",
                          "-t", f"{load.name}:bench", str(load.context)],
                         {"DISTILL_ROOT": str(root)})
        finally:
            shutil.rmtree(root)

    def export_layout(self, image: str) -> Path:
        """``image`` from the bases store as an OCI layout directory (ref: its tag)."""
        ctx = self.work / f"ctx-{image.replace('/', '-').replace(':', '-')}"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(f"FROM {image}\n")
        dest = self.work / f"layout-{image.replace('/', '-').replace(':', '-')}"
        sh([self.exe, "build", "--progress", "quiet", "-t", image,
            "--output", f"type=oci,dest={dest},tar=false", str(ctx)],
           {"DISTILL_ROOT": str(self.bases_root)})
        return dest


class Buildah:
    name = "buildah"

    def __init__(self, work: Path, layouts: dict[str, Path]) -> None:
        self.work, self.layouts = work, layouts

    def _argv(self, home: Path, *args: str) -> list[str]:
        return buildah_argv(home, *args)

    def cold(self, load: Workload, run: int) -> Sample:
        home = self.work / f"buildah-{load.name}-{run}"
        for image in load.bases:
            pull = self._argv(home, "pull", "--quiet",
                              f"oci:{self.layouts[image]}:{image.split(':')[1]}")
            proc = subprocess.run(pull, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"bench: {' '.join(pull)} failed:\n{proc.stderr[-3000:]}")
            image_id = proc.stdout.split()[-1]
            sh(self._argv(home, "tag", image_id, f"localhost/{image}"))
        try:
            return timed(self._argv(home, "build", "--isolation=chroot", "--pull=never",
                                    "--layers", "--no-cache", "--build-arg",
                                    f"BASE=localhost/{load.base_arg}", "-t", f"{load.name}:bench",
                                    str(load.context)))
        finally:
            subprocess.run(self._argv(home, "rm", "--all"), check=False,
                           capture_output=True)
            subprocess.run(self._argv(home, "rmi", "--all", "--force"), check=False,
                           capture_output=True)
            shutil.rmtree(home, ignore_errors=True)


def report(loads: list[Workload], samples: dict[tuple[str, str], list[Sample]],
           runs: int) -> None:
    """Medians, the ratios of medians, and the median of each run's own current/baseline
    ratio (the two builds of one run are minutes apart, under the same load)."""
    print(f"\ncold builds, median of {runs} run{'s' if runs > 1 else ''}")
    for what in ("wall", "cpu"):
        print(f"\n  {what} time")
        print(f"  {'build':8} {'current':>8} {'baseline':>8} {'buildah':>8}   current/baseline "
              "(per run)  current/buildah")
        for load in loads:
            values = {name: [getattr(s, what) for s in samples[(load.name, name)]]
                      for name in ("current", "baseline", "buildah")}
            med = {name: statistics.median(v) for name, v in values.items()}
            paired = statistics.median(c / b for c, b in zip(values["current"],
                                                             values["baseline"], strict=True))
            print(f"  {load.name:8} {med['current']:7.1f}s {med['baseline']:7.1f}s "
                  f"{med['buildah']:7.1f}s   {med['current'] / med['baseline']:16.3f} "
                  f"({paired:.3f})  {med['current'] / med['buildah']:15.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distill", default=CURRENT,
                    help="the current distill executable (default: this venv's)")
    ap.add_argument("--baseline-distill", required=True,
                    help="a distill executable from before isolation (e.g. 4bb0edf's)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workload", action="append", choices=("runs", "go-hello"),
                    help="what to build (repeatable; default: both)")
    args = ap.parse_args()
    names = args.workload or ["runs", "go-hello"]
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="distill-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        busybox_tar = write_busybox_rootfs_tar(work / "busybox.tar")
        current = Distill("current", args.distill, work, busybox_tar)
        baseline = Distill("baseline", args.baseline_distill, work, busybox_tar)
        for d in (current, baseline):
            print(f"{d.name:8} bases: {d.base_ids()}", flush=True)
        loads = workloads(work, names)
        needed = sorted({image for load in loads for image in load.bases})
        buildah = Buildah(work, {image: current.export_layout(image) for image in needed})
        builders: list[Distill | Buildah] = [current, baseline, buildah]
        samples: dict[tuple[str, str], list[Sample]] = {}
        for load in loads:
            for run in range(args.runs):
                order = builders[run % 3:] + builders[:run % 3]
                for b in order:
                    t = b.cold(load, run)
                    samples.setdefault((load.name, b.name), []).append(t)
                    print(f"{load.name:8} run {run + 1}: {b.name:8} {t.wall:6.1f}s "
                          f"(CPU {t.cpu:6.1f}s)", flush=True)
    report(loads, samples, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
