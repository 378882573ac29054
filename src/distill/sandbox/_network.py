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
(the only identity, besides root, that may enter it), never as root, and dies with
distill.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from distill.errors import SandboxError
from distill.sandbox import _userns

#: How long the sandbox's loopback, then pasta's configuration, may take.
_SETUP_TIMEOUT = 10.0

_PASTA_OPTIONS = ("--config-net", "--quiet", "--no-map-gw",
                  "-t", "none", "-u", "none", "-T", "none", "-U", "none")


def _setpriv() -> str:
    found = shutil.which("setpriv")
    if found is None:
        raise SandboxError("setpriv (util-linux) is not installed",
                           hint="install it: apt-get install util-linux")
    return found


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


def _wait_for(pid: int, what: str, ready: Callable[[int], bool],
              helper: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until ``ready(pid)``; a SandboxError if the sandbox (or ``helper``) ends first."""
    deadline = time.monotonic() + _SETUP_TIMEOUT
    while True:
        try:
            if ready(pid):
                return
        except OSError as exc:
            raise SandboxError(f"the sandbox ended before {what}: {exc}") from exc
        if helper is not None and helper.poll() is not None:
            assert helper.stderr is not None
            detail = helper.stderr.read().decode(errors="replace").strip().splitlines()
            raise SandboxError("cannot set up the sandbox's network: "
                               + (detail[-1] if detail else f"pasta exited {helper.returncode}"))
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _loopback_up(pid: int) -> bool:
    with open(f"/proc/{pid}/net/fib_trie", "rb") as f:
        return b"127.0.0.1" in f.read()


def _has_default_route(pid: int | str) -> bool:
    with open(f"/proc/{pid}/net/route", "rb") as f:
        return any(line.split()[1:2] == [b"00000000"] for line in f.read().splitlines()[1:])


def _has_address(pid: int) -> bool:
    """An IPv4 address other than the loopback's is local to the namespace."""
    address = b""
    with open(f"/proc/{pid}/net/fib_trie", "rb") as f:
        for line in f:
            if b"|-- " in line:
                address = line.split(b"|-- ", 1)[1].strip()
            elif b"/32 host LOCAL" in line and not address.startswith(b"127."):
                return True
    return False


@contextmanager
def attached(pid: int, uid: int, gid: int) -> Iterator[None]:
    """pasta serving the network namespace of ``pid`` (a process in a user namespace
    owned by host ``uid``) for the block; stopped after it.

    pasta runs in the foreground as our child, started as ``uid`` (the owner of the
    sandbox's user namespace, so it may enter it; never root), under ``setpriv
    --pdeathsig KILL``: if distill dies, even by SIGKILL, pasta goes with it.
    """
    _wait_for(pid, "its loopback came up", _loopback_up)
    argv = [_setpriv(), "--pdeathsig", "KILL", "--", _pasta(), "--foreground",
            *_PASTA_OPTIONS, "--netns", f"/proc/{pid}/ns/net", "--userns", f"/proc/{pid}/ns/user"]
    # no supplementary groups, where this process may drop them (a rootless namespace
    # with a single id has none to drop, and may not call setgroups)
    groups: list[int] | None = [] if _userns.setgroups_allowed() else None
    helper = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={}, cwd="/", user=uid, group=gid,
                              extra_groups=groups)
    try:
        # Ready once the namespace has the host's default route (or, on a host without
        # one, an address on pasta's interface).
        ready = _has_default_route if _has_default_route("self") else _has_address
        _wait_for(pid, "its network was configured", ready, helper)
        yield
    finally:
        helper.terminate()
        try:
            helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        if helper.stderr is not None:
            helper.stderr.close()
