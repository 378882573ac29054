"""The user namespace of a non-root RUN: every id mapped to itself.

bubblewrap is started with real uid N and effective uid 0 (its "setuid
mode"), so the user namespace it creates is owned by root, not by N; with
``--userns-block-fd`` it then waits while we, root in the parent namespace,
write the identity mapping (``0 0 4294967295`` on a host). Inside, uid N is host
uid N (files it creates are owned by N in the overlay upper dir) and every
other owner keeps its id, so root's files are root's, not the overflow uid.

Root ownership of the namespace matters: a namespace owned by uid N would
give every host process of uid N all capabilities over it, and with every id
mapped, over root's files too (setns into it and write /etc/passwd).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from distill.errors import SandboxError


def identity_map(own_map: str) -> bytes:
    """The identity mapping over the ids our own namespace maps (``/proc/self/uid_map``).

    On a host that is ``0 0 4294967295``; inside a container whose user
    namespace maps fewer ids, only those, which is all the kernel would allow.
    """
    lines = []
    for line in own_map.splitlines():
        fields = line.split()
        if len(fields) == 3:
            inside, _outside, count = fields
            lines.append(f"{inside} {inside} {count}\n")
    return "".join(lines).encode()


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


def map_identity(info: dict[str, int]) -> None:
    """Write identity uid and gid maps for the user namespace of bwrap's child.

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
                with open(f"/proc/self/{name}", encoding="ascii") as own:
                    mapping = identity_map(own.read())
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
