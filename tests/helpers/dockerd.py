"""A private Docker engine for tests: its own socket, data root and pid file."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# Debian's docker.io client (20.10) builds with BuildKit built in; a newer client found
# first on PATH may insist on the buildx plugin, which this machine does not have.
DOCKER_CLI = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"


class Docker:
    def __init__(self, host: str) -> None:
        self.host = host

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER_CLI, "--host", self.host, *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc


@contextmanager
def private_dockerd(workdir: Path, timeout: float = 60) -> Iterator[Docker]:
    """Start dockerd (no iptables, no bridge: containers use --network=host)."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed (Debian package docker.io)")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "docker.sock"
    host = f"unix://{sock}"
    log = open(workdir / "dockerd.log", "wb")
    # containerd's sockets live under the exec root, and a unix socket path has at most
    # 104 bytes: a test's tmp_path is too deep for it
    exec_root = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--host", host, "--data-root", str(workdir / "data"),
         "--exec-root", str(exec_root), "--pidfile", str(workdir / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DOCKER_HOST": host})
    docker = Docker(host)
    deadline = time.monotonic() + timeout
    try:
        while docker("info", check=False, timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start:\n"
                                   + (workdir / "dockerd.log").read_text()[-3000:])
            time.sleep(0.5)
        yield docker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        _unmount_under(workdir)
        _unmount_under(exec_root)
        shutil.rmtree(exec_root, ignore_errors=True)


def _unmount_under(workdir: Path) -> None:
    """dockerd leaves its netns and overlay mounts behind; detach them (deepest first)."""
    prefix = str(workdir.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
