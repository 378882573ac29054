"""--jobs: independent stages run at the same time (shown by a rendezvous, not by timing)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import RunDistill

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
