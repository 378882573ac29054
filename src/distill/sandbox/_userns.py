"""The user namespace of a RUN: container ids shifted into an unprivileged host range.

bubblewrap is started as host uid ``ids.base`` (container root's host uid: an
unprivileged id that owns no host file) and creates the user namespace itself;
with ``--userns-block-fd`` it then waits while we, root in the parent namespace,
write the maps ``0 base count`` (one line each for uids and gids), which only a
process privileged in the parent namespace may write. Inside, container uid N is
host uid ``base + N``; the root filesystem is an idmapped view (see
:mod:`~distill.sandbox._idmap`), so files keep their real container ids on disk.

The namespace is owned by host uid ``base``: no host process runs as that uid,
and the sandboxes' own processes (which do) are each inside a child namespace of
their own, where ownership of a sibling namespace grants nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from distill.errors import SandboxError


def read_info(fd: int) -> dict[str, int] | None:
    """bwrap's ``--info-fd`` record, read until bwrap closes it; None if it wrote none."""
    data = bytearray()
    while chunk := os.read(fd, 4096):
        data += chunk
    if not data.strip():
        return None  # bwrap failed before cloning; its exit status says why
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise SandboxError(f"unexpected bwrap --info-fd output: {bytes(data)!r}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("child-pid"), int):
        raise SandboxError(f"unexpected bwrap --info-fd output: {bytes(data)!r}")
    return record


def write_maps(info: dict[str, int], mapping: bytes) -> None:
    """Write ``mapping`` as the uid and gid maps of bwrap's child's user namespace.

    The child is blocked until we unblock it, so its pid cannot be reused
    meanwhile; still, check through a /proc/PID handle that it is the process
    bwrap described (same mount namespace) before writing through that handle.
    If a map cannot be written, the child is killed: left blocked, it would
    outlive bwrap, which only makes it die with its parent later.
    """
    pid = info["child-pid"]
    try:
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cannot map ids for the sandbox: {exc}") from exc
    try:
        try:
            mnt = os.stat("ns/mnt", dir_fd=proc).st_ino
        except OSError as exc:
            raise SandboxError(f"cannot map ids for the sandbox: {exc}") from exc
        if "mnt-namespace" in info and mnt != info["mnt-namespace"]:
            raise SandboxError(f"cannot map ids for the sandbox: {pid} is not bwrap's child")
        try:
            for name in ("uid_map", "gid_map"):
                fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc)
                try:
                    os.write(fd, mapping)  # one write: the kernel takes the map whole
                finally:
                    os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            raise SandboxError(f"cannot map ids for the sandbox: {exc}") from exc
    finally:
        os.close(proc)
