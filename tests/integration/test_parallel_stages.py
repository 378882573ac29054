"""--jobs: independent stages run at the same time (shown by a rendezvous, not by timing)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.progress import parse_plain

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_independent_stages_meet(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    # Stage "listen" can only finish if stage "talk" runs while it waits, and vice versa.
    # The listener listens again after an empty connection; the talker sends until the
    # listener is gone (ten refusals in a row after a delivery). Each RUN has a network
    # of its own: the two meet on the host's (--network=host, granted by --allow).
    port = _free_port()
    (tmp_path / "Dockerfile").write_text(f"""\
FROM busybox AS listen
RUN --network=host timeout 60 sh -c 'until nc -l -p {port} > /got && test -s /got; do :; done'
FROM busybox AS talk
RUN --network=host sent=0; refused=0; for i in $(seq 1 300); do \
      if echo hello | nc 127.0.0.1 {port}; then sent=1; refused=0; \
      elif [ $sent = 1 ]; then refused=$((refused + 1)); [ $refused -ge 10 ] && exit 0; fi; \
      sleep 0.2; done; exit 1
FROM busybox
COPY --from=listen /got /got
COPY --from=talk /etc/passwd /passwd
""")
    out = tmp_path / "out"
    distill("build", "--no-cache", "--jobs", "2", "--allow", "network.host",
            "--output", f"type=local,dest={out}", str(tmp_path))
    assert (out / "got").read_text() == "hello\n"


def test_jobs_must_be_positive(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    proc = distill("build", "--jobs", "0", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--jobs" in proc.stderr


def test_a_failed_stage_cancels_the_others(busybox_image: str, store_root: Path,
                                           tmp_path: Path) -> None:
    """As BuildKit: when one stage fails, the stages running beside it are cancelled and
    their RUN processes killed; the build ends with the first failure, not after the
    others' work. Stage "slow" is surely running (it met "fails" on a port) when
    "fails" exits 3; its hour-long sleep must not hold the build."""
    port = _free_port()
    (tmp_path / "Dockerfile").write_text(f"""\
FROM {busybox_image} AS slow
RUN --network=host sh -c 'nc -l -p {port} > /dev/null; sleep 3600'
FROM {busybox_image} AS fails
RUN --network=host timeout 60 sh -c 'until echo hi | nc 127.0.0.1 {port}; do :; done; exit 3'
FROM {busybox_image}
COPY --from=slow /etc/passwd /a
COPY --from=fails /etc/passwd /b
""")
    env = {**os.environ, "DISTILL_ROOT": str(store_root)}
    proc = subprocess.run([DISTILL, "build", "--no-cache", "--jobs", "2", "--allow",
                           "network.host", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)   # a hang guard: sleep 3600
    assert proc.returncode == 1, proc.stderr
    assert "exit code: 3" in proc.stderr or "exit code 3" in proc.stderr, proc.stderr
    assert "cancelled" not in proc.stderr and "Traceback" not in proc.stderr
    # the log says which step failed and which one was only stopped (BuildKit's CANCELED)
    outcomes = {s.title.split(" ")[0]: s.outcome for s in parse_plain(proc.stderr)
                if "RUN" in s.title}
    assert outcomes == {"[slow": "CANCELED", "[fails": "ERROR"}, proc.stderr
