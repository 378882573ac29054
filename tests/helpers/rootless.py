"""What the tests expect when they run as an ordinary user (tests/rootless/run): distill
is then rootless, and ids on the host are the user's own and its subordinate range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.sandbox.rootless import subordinate_range

#: the tests run as an ordinary user: distill re-executes into a user namespace
ROOTLESS = os.geteuid() != 0

#: a test whose setup needs root (chown of context files, sniffing the host's loopback,
#: device nodes): tests/rootless/run deselects it (`-m "not needs_root"`); it still runs,
#: and must pass, in the root suite
needs_root = pytest.mark.needs_root


def host_id(container_id: int, kind: str = "uid") -> int:
    """The host id of a RUN's ``container_id``: 2^31 + id as root; rootless, the user's
    own id for 0 and its subordinate range for the rest (``unshare --map-auto``)."""
    if not ROOTLESS:
        return 2**31 + container_id
    if container_id == 0:
        return os.getuid() if kind == "uid" else os.getgid()
    found = subordinate_range(f"/etc/sub{kind}", os.getuid())
    assert found is not None, f"the rootless test user has no /etc/sub{kind} range"
    return found[0] + container_id - 1


def owner(uid: int, gid: int) -> tuple[int, int]:
    """The owner a file of the image with ``uid:gid`` has once unpacked by the tests'
    user: itself, rootless (umoci --rootless, and distill's rootless local output, write
    the user's own files)."""
    return (os.getuid(), os.getgid()) if ROOTLESS else (uid, gid)


_SCAN = """\
import gzip, os, sys
root, secret = sys.argv[1], bytes.fromhex(sys.argv[2])
for parent, _dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(parent, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        data = open(path, "rb").read()
        if secret in data or (data[:2] == b"\\x1f\\x8b" and secret in gzip.decompress(data)):
            print(path)
"""


def files_holding(root: Path, secret: bytes) -> list[str]:
    """The files under ``root`` (gzip members decompressed too) that hold ``secret``.
    Rootless, read as the store's owner (a namespace like distill's own): the files of
    subordinate ids in a store are not the user's to read from outside."""
    argv = [sys.executable, "-c", _SCAN, str(root), secret.hex()]
    if ROOTLESS:
        argv = ["unshare", "--map-auto", "--map-root-user", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()


def run_has_own_proc() -> bool:
    """Whether distill's RUNs get a /proc of their own here: not where a container masks
    /proc, which the kernel then lets no user namespace mount anew (distill probes the
    same way, from inside its own namespace: distill.sandbox.rootless.own_proc_possible)."""
    if not ROOTLESS:
        return True
    probe = ["unshare", "--map-root-user", "--pid", "--fork", "--mount", "--propagation",
             "private", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0
