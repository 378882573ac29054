"""Ctrl-C stops a build at once (issue 13).

"Ctrl-C stops a build within a second, kills its RUN processes and leaves no mount behind."
Each test starts the real CLI on a store of its own, waits until a RUN that would sleep
for days runs (found by its unique ``sleep N`` command line), then sends SIGINT: to distill
alone, or to distill's whole process group, as a terminal's Ctrl-C does (the sandbox's
processes are in that group too). distill must end with "interrupted" and exit code 130,
and take its RUNs, their mounts and nothing of the store with it.

The time each interrupt took is printed (``-s`` shows it); it is asserted only against a
generous bound, since timed assertions are flaky on a shared machine.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.faults import mounts_under, processes_using

pytestmark = pytest.mark.integration

#: how long distill may take to stop; the issue asks for a second, this only catches hangs
EXIT_TIMEOUT = 20.0


def _nap() -> int:
    """A sleep length no other process on the machine has on its command line."""
    return random.randrange(10**6, 10**7)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _mounts_anywhere(*roots: Path) -> list[str]:
    """Mount points under any of ``roots``, in our mount table and every process's."""
    found = []
    for table in [Path("/proc/self/mountinfo"), *Path("/proc").glob("[0-9]*/mountinfo")]:
        try:
            lines = table.read_text().splitlines()
        except OSError:
            continue    # the process is gone
        for line in lines:
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
                found.append(f"{table}: {point}")
    return found


def _sigint_as_a_terminal_sends_it() -> None:
    """distill as a shell starts it in the foreground: SIGINT at its default. A suite run
    in the background of a non-interactive shell inherits SIGINT ignored (POSIX: so that
    the terminal's Ctrl-C spares background jobs), and distill, as any program, keeps an
    ignored SIGINT ignored: that would test the shell, not distill."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Build:
    """One ``distill build`` of ``dockerfile`` on a store of the test's own."""

    def __init__(self, tmp_path: Path, distill: RunDistill, busybox_tar: Path,
                 dockerfile: str, *, jobs: int = 2) -> None:
        self.tmp_path = tmp_path
        self.distill = distill
        self.store = tmp_path / "store"
        distill("import", str(busybox_tar), "busybox:latest", root=self.store)
        self.ctx = tmp_path / "ctx"
        self.ctx.mkdir()
        (self.ctx / "Dockerfile").write_text(dockerfile)
        self.args = ["build", "--progress", "plain", "--jobs", str(jobs), "-t", "napped:1",
                     str(self.ctx)]
        self.stderr_path = tmp_path / "stderr"

    def start(self, *, new_session: bool) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DISTILL_ROOT": str(self.store)}
        with open(self.stderr_path, "wb") as err:
            return subprocess.Popen([DISTILL, *self.args], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=new_session,
                                    preexec_fn=_sigint_as_a_terminal_sends_it)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def interrupt(self, markers: list[str], *, group: bool) -> float:
        """Start the build, wait until each marker's RUN runs, send SIGINT; the seconds
        distill took to exit. Leaves nothing running whatever happens."""
        proc = self.start(new_session=group)
        try:
            _wait_for(lambda: all(processes_using(m) for m in markers) or
                      proc.poll() is not None, 60, f"the RUNs {markers} to start")
            assert proc.poll() is None, f"the build ended early:\n{self.stderr()}"
            time.sleep(0.2)     # the sleeps are well under way: nothing is half set up
            sent = time.monotonic()
            if group:
                os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
            else:
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"distill did not stop within {EXIT_TIMEOUT}s of SIGINT:\n"
                    f"{self.stderr()}\nstill running: "
                    f"{[p for m in markers for p in processes_using(m)]}") from None
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        print(f"\ndistill exited {took:.3f}s after SIGINT "
              f"({'to its process group' if group else 'to distill alone'})")
        assert proc.returncode == 130, f"exit code {proc.returncode}:\n{self.stderr()}"
        return took

    def check_after(self, markers: list[str]) -> None:
        """Nothing of the interrupted build runs or stays mounted; the store verifies and
        the same build then succeeds."""
        err = self.stderr()
        assert err.rstrip().splitlines()[-1] == "interrupted", err
        assert "Traceback" not in err, err
        assert "Exception ignored" not in err, err
        # the RUNs die with distill (no grace period: they were killed, not orphaned)
        _wait_for(lambda: not any(processes_using(m) for m in markers), 5,
                  "the RUN processes to be gone")
        assert processes_using(str(self.store)) == []
        assert mounts_under(self.store) == []
        assert _mounts_anywhere(self.store, self.tmp_path) == []
        verify = self.distill("store", "verify", root=self.store, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert verify.stdout.splitlines()[-1:] == ["store is consistent"], verify.stdout


def _rebuild_quickly(build: Build, naps: list[int]) -> None:
    """The same Dockerfile with the naps made short builds, in the same store."""
    text = (build.ctx / "Dockerfile").read_text()
    for nap in naps:
        text = text.replace(f"sleep {nap}", "sleep 0")
    (build.ctx / "Dockerfile").write_text(text)
    build.distill(*build.args, root=build.store)
    tagged = build.distill("images", root=build.store).stdout
    assert "napped" in tagged, tagged
    verify = build.distill("store", "verify", root=build.store)
    assert verify.stdout.splitlines()[-1:] == ["store is consistent"], verify.stdout
    assert _mounts_anywhere(build.store, build.tmp_path) == []


@pytest.mark.parametrize("group", [False, True], ids=["to-distill", "to-group"])
def test_ctrl_c_during_run(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                           group: bool) -> None:
    nap = _nap()
    build = Build(tmp_path, distill, busybox_tar,
                  f"FROM busybox\nRUN echo before > /before\nRUN sleep {nap}\n")
    build.interrupt([f"sleep {nap}"], group=group)
    build.check_after([f"sleep {nap}"])
    _rebuild_quickly(build, [nap])


@pytest.mark.parametrize("group", [False, True], ids=["to-distill", "to-group"])
def test_ctrl_c_during_run_that_ignores_signals(distill: RunDistill, busybox_tar: Path,
                                                tmp_path: Path, group: bool) -> None:
    """A RUN that ignores SIGINT and SIGTERM is stopped all the same."""
    nap = _nap()
    build = Build(tmp_path, distill, busybox_tar,
                  f"FROM busybox\nRUN trap '' INT TERM HUP; sleep {nap}; echo done > /done\n")
    build.interrupt([f"sleep {nap}"], group=group)
    build.check_after([f"sleep {nap}"])
    _rebuild_quickly(build, [nap])


@pytest.mark.parametrize("group", [False, True], ids=["to-distill", "to-group"])
def test_ctrl_c_during_parallel_stages(distill: RunDistill, busybox_tar: Path,
                                       tmp_path: Path, group: bool) -> None:
    """Two stages, each in a RUN, at once (--jobs 2): both are stopped."""
    naps = [_nap(), _nap()]
    build = Build(tmp_path, distill, busybox_tar,
                  f"FROM busybox AS one\nRUN sleep {naps[0]} && echo 1 > /one\n"
                  f"FROM busybox AS two\nRUN trap '' INT TERM; sleep {naps[1]}; echo 2 > /two\n"
                  "FROM busybox\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n",
                  jobs=2)
    markers = [f"sleep {n}" for n in naps]
    build.interrupt(markers, group=group)
    build.check_after(markers)
    _rebuild_quickly(build, naps)


def test_ctrl_c_during_a_big_copy(distill: RunDistill, busybox_tar: Path,
                                  tmp_path: Path) -> None:
    """Regression (outsider review): an interrupt during a COPY was acted on only when
    the step had finished (8.6 s for a 3 GB file). The COPY here reads 64 GB (a sparse
    file: no disk), a minute's work: a distill that waits for it misses the bound."""
    build = Build(tmp_path, distill, busybox_tar, "FROM busybox\nCOPY . /c/\nRUN echo ok\n")
    big = build.ctx / "big"
    with open(big, "wb") as f:
        f.truncate(64 << 30)
    with open(build.stderr_path, "wb") as err:
        proc = subprocess.Popen([DISTILL, *build.args],
                                env={**os.environ, "DISTILL_ROOT": str(build.store)},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, preexec_fn=_sigint_as_a_terminal_sends_it)
    try:
        _wait_for(lambda: "COPY . /c/" in build.stderr() or proc.poll() is not None, 60,
                  "the COPY to start")
        time.sleep(0.3)
        assert proc.poll() is None, build.stderr()
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"distill did not stop within {EXIT_TIMEOUT}s of SIGINT "
                                 f"during a COPY:\n{build.stderr()}") from None
        print(f"\ndistill exited {time.monotonic() - sent:.3f}s after SIGINT during COPY")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, build.stderr()
    build.check_after([])
    big.unlink()
    build.distill(*build.args, root=build.store)


def test_sigterm_stops_a_build_as_ctrl_c_does(distill: RunDistill, busybox_tar: Path,
                                              tmp_path: Path) -> None:
    """SIGTERM (a cancelled CI job, a pod's end) kills the RUNs and says so: exit 143,
    "terminated" (it ended silently, leaving its sandbox's directory behind)."""
    nap = _nap()
    build = Build(tmp_path, distill, busybox_tar, f"FROM busybox\nRUN sleep {nap}\n")
    proc = build.start(new_session=False)
    try:
        _wait_for(lambda: bool(processes_using(f"sleep {nap}")) or proc.poll() is not None,
                  60, "the RUN to start")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 143, build.stderr()
    assert build.stderr().rstrip().splitlines()[-1] == "terminated"
    _wait_for(lambda: not processes_using(f"sleep {nap}"), 5, "the RUN to be gone")
    assert mounts_under(build.store) == []
