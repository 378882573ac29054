"""Killing builds on purpose: the multi-stage project they build, and what to check after.

Each build is made cold by a build argument (``ROUND``) that the first RUN uses, so every
step after it runs again; ``distill prune`` before a round removes the unpacked base, so
that round unpacks it again. The build says which phase it is in through
``DISTILL_PHASE_LOG`` (``distill/phases.py``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import DISTILL

DOCKERFILE = """\
FROM busybox AS build
ARG ROUND=0
COPY src/ /src/
RUN mkdir -p /out && for i in 1 2 3 4 5 6 7 8; do head -c 262144 /dev/urandom > /out/blob$i; done \\
    && echo "round $ROUND" > /out/round && cat /src/* > /out/all
RUN cd /out && md5sum * > /out/sums

FROM busybox
ARG ROUND=0
COPY --from=build /out/ /app/
RUN echo "$ROUND" > /app/final && md5sum /app/blob1 >> /app/final
"""

#: where a kill can land, in the order a build goes through them
PHASES = ("unpack", "run", "diff", "compress", "store", "output")
FINISHED = "finished before the kill"


def write_project(ctx: Path) -> Path:
    (ctx / "src").mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for i in range(20):
        (ctx / "src" / f"f{i}").write_text(f"file {i}\n")
    return ctx


def processes_using(marker: str) -> list[str]:
    """Command lines of running processes that name ``marker`` (a store path)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(f"{pid}: {cmdline.decode(errors='replace')[:200]}")
    return found


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(path) in line]


@dataclass
class KillLoop:
    """Build, kill, rebuild and verify, ``rounds`` times, on one store."""

    workdir: Path
    base_tar: Path
    seed: int
    landed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = self.workdir / "store"
        self.ctx = write_project(self.workdir / "ctx")
        self.log = self.workdir / "phases.log"
        self.rng = random.Random(self.seed)
        self.env = {**os.environ, "DISTILL_ROOT": str(self.store),
                    "DISTILL_PHASE_LOG": str(self.log)}

    def distill(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DISTILL, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def build_args(self, round_: int) -> list[str]:
        """Outputs taken in turn: the store, an OCI tar, a local directory."""
        out = [["-t", "app:latest"],
               ["-o", f"type=oci,dest={self.workdir / 'app.tar'}"],
               ["-o", f"type=local,dest={self.workdir / 'rootfs'}"]][round_ % 3]
        return ["build", "--progress", "plain", "--build-arg", f"ROUND={round_}", *out,
                str(self.ctx)]

    def setup(self) -> float:
        """Import the base and time one cold build (the span kills are spread over)."""
        proc = self.distill("import", str(self.base_tar), "busybox:latest")
        assert proc.returncode == 0, proc.stderr
        started = time.monotonic()
        proc = self.distill(*self.build_args(-1))
        assert proc.returncode == 0, proc.stderr
        return time.monotonic() - started

    def last_phase(self) -> str:
        try:
            lines = self.log.read_text().split()
        except FileNotFoundError:
            return "start-up"
        return lines[-1] if lines else "start-up"

    def run(self, kills: int, first: int, span: float) -> None:
        """Go on until ``kills`` builds were killed (a build can finish first)."""
        round_ = first
        while sum(n for phase, n in self.landed.items() if phase != FINISHED) < kills:
            # every other round aims at a phase (killed a moment after it starts), the
            # others at a random moment of the whole build
            target = PHASES[(round_ // 2) % len(PHASES)] if round_ % 2 == 0 else None
            if target == "unpack" or round_ % 25 == 0:
                self.check(self.distill("prune", "-f"), f"prune before round {round_}")
            self.log.unlink(missing_ok=True)
            self.kill_one(round_, target, span)
            self.check(self.distill(*self.build_args(round_)), f"rebuild of round {round_}")
            verify = self.distill("store", "verify")
            self.check(verify, f"store verify after round {round_}")
            if verify.stdout.splitlines()[-1:] != ["store is consistent"]:
                # not even a temp file: every one lives in the killed process's temp
                # directory, which the next store user removes
                self.failures.append(f"after round {round_}: {verify.stdout}")
            round_ += 1
            if round_ - first > 2 * kills:
                self.failures.append(f"only {kills} kills landed in {round_ - first} rounds")
                return

    def kill_one(self, round_: int, target: str | None, span: float) -> None:
        proc = subprocess.Popen([DISTILL, *self.build_args(round_)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (self.rng.uniform(0.05, span) if target is None
                                       else 120)
        while time.monotonic() < deadline and proc.poll() is None:
            if target is not None and target in self.log_phases():
                time.sleep(self.rng.uniform(0, 0.008))
                break
            time.sleep(0.002)
        if proc.poll() is not None:
            self.landed[FINISHED] += 1
        else:
            phase = self.last_phase()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.landed[phase] += 1
        self.after_kill(round_)

    def log_phases(self) -> set[str]:
        try:
            return set(self.log.read_text().split())
        except FileNotFoundError:
            return set()

    def after_kill(self, round_: int) -> None:
        """The build's RUN processes die with it, and it leaves no mount behind."""
        deadline = time.monotonic() + 10
        while (left := processes_using(str(self.store))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            self.failures.append(f"round {round_}: processes outlived the build: {left}")
        if mounts_under(self.store):
            self.failures.append(f"round {round_}: mounts left: {mounts_under(self.store)}")

    def check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            self.failures.append(f"{what} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
