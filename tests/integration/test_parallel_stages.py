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
    port = _free_port()
    (tmp_path / "Dockerfile").write_text(f"""\
FROM busybox AS listen
RUN timeout 60 nc -l -p {port} > /got && test -s /got
FROM busybox AS talk
RUN for i in $(seq 1 300); do echo hello | nc 127.0.0.1 {port} && exit 0; sleep 0.2; done; exit 1
FROM busybox
COPY --from=listen /got /got
COPY --from=talk /etc/passwd /passwd
""")
    out = tmp_path / "out"
    distill("build", "--no-cache", "--jobs", "2", "--output", f"type=local,dest={out}",
            str(tmp_path))
    assert (out / "got").read_text() == "hello\n"


def test_jobs_must_be_positive(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    proc = distill("build", "--jobs", "0", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--jobs" in proc.stderr
