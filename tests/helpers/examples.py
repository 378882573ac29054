"""The examples under examples/ as build contexts, and a way to talk to what they serve."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

from tests.helpers.dockerd import Docker


def example_context(example: Path, dest: Path) -> Path:
    """A copy of ``example`` at ``dest``, with the TLS-intercepting proxy's CA (when
    SSL_CERT_FILE names one) as the optional extra-ca.crt the example's Dockerfile copies.

    The example is copied rather than written into: other sessions build the same
    example at the same time, and an extra-ca.crt that one of them removes mid-build
    would fail another's download from PyPI (and the other way round)."""
    shutil.copytree(example, dest, ignore=shutil.ignore_patterns("extra-ca.crt", ".venv"))
    ca = os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        shutil.copyfile(ca, dest / "extra-ca.crt")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_when_up(docker: Docker, cid: str, url: str) -> str:
    """GET ``url`` once the container's server listens; fail at once if the container
    stops. (The deadline is only a guard against a hang, never part of the assertion.)"""
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            running = docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                logs = docker("logs", cid, check=False)
                raise AssertionError(f"no answer at {url} (running={running}):\n"
                                     f"{logs.stdout}{logs.stderr}") from None
            time.sleep(0.2)
