"""A RUN's private network: its own namespace, outbound access through pasta.

bubblewrap makes the network namespace (``--unshare-net``) and brings its
loopback up; pasta (Debian's ``passt``) then attaches a tap device to it and
relays the sandbox's outbound TCP, UDP and ICMP through ordinary sockets of its
own on the host. The host's loopback is out of reach (``--no-map-gw``: the
gateway is not a back door to the host's 127.0.0.1), no port is forwarded in
either direction, and the sandbox holds no capability over the host's network,
so it can neither reach a host service on 127.0.0.1, nor open a packet socket on
a host interface.

pasta runs as the unprivileged host uid that owns the sandbox's user namespace
(the only identity, besides root, that may enter it), never as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from distill.errors import SandboxError

#: How long bubblewrap may take to bring the sandbox's loopback up.
_LOOPBACK_TIMEOUT = 10.0

_PASTA_OPTIONS = ("--config-net", "--quiet", "--no-map-gw",
                  "-t", "none", "-u", "none", "-T", "none", "-U", "none")


def _pasta() -> str:
    found = shutil.which("pasta")
    if found is None:
        raise SandboxError("RUN's private network needs pasta, which is not installed",
                           hint="install it (apt-get install passt), or use "
                                "RUN --network=none where no network is needed")
    return found


def check_available() -> None:
    """Fail early, before bubblewrap starts, if the private network cannot be made."""
    _pasta()
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK, effective_ids=False) or \
            os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
        raise SandboxError(
            "RUN's private network needs /dev/net/tun usable by unprivileged users",
            hint="udev makes it mode 0666 on Debian; without udev: chmod 0666 /dev/net/tun")


def _wait_for_loopback(pid: int) -> None:
    """Wait until bubblewrap has configured the loopback of ``pid``'s network namespace."""
    deadline = time.monotonic() + _LOOPBACK_TIMEOUT
    path = f"/proc/{pid}/net/fib_trie"
    while True:
        try:
            with open(path, "rb") as f:
                if b"127.0.0.1" in f.read():
                    return
        except OSError as exc:
            raise SandboxError(f"the sandbox ended before its network was set up: {exc}") \
                from exc
        if time.monotonic() > deadline:
            raise SandboxError("the sandbox's loopback did not come up")
        time.sleep(0.001)


@contextmanager
def attached(pid: int, uid: int, gid: int) -> Iterator[None]:
    """pasta serving the network namespace of ``pid`` (a process in a user namespace
    owned by host ``uid``) for the block; stopped after it."""
    _wait_for_loopback(pid)
    # /run, not $TMPDIR: pasta runs unprivileged and must reach its pid file's directory.
    parent = "/run" if os.path.isdir("/run") else None
    with tempfile.TemporaryDirectory(prefix="distill-pasta-", dir=parent) as tmp:
        os.chown(tmp, uid, gid)
        pid_file = Path(tmp, "pid")
        argv = [_pasta(), *_PASTA_OPTIONS, "--runas", f"{uid}:{gid}", "--pid", str(pid_file),
                "--netns", f"/proc/{pid}/ns/net", "--userns", f"/proc/{pid}/ns/user"]
        # pasta goes to the background once the namespace's network is configured.
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              check=False, env={})
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SandboxError("cannot set up the sandbox's network: "
                               + (detail[-1] if detail else f"pasta exited {proc.returncode}"))
        try:
            yield
        finally:
            with suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
