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
import queue
import signal
import subprocess
import threading
from typing import Any

from distill.errors import SandboxError
from distill.sandbox import _libc, rootless

# util-linux, in every Debian (the sandbox's other needs: bubblewrap, pasta)
UNSHARE = "/usr/bin/unshare"
SETPRIV = "/usr/bin/setpriv"


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


def start(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` for bubblewrap, started as the first process
    of a PID namespace of its own, with a /proc of that namespace.

    bubblewrap's child waits for its parent twice before it binds its own life to
    that parent's (``--die-with-parent``): for the id maps, and on ``--block-fd``. Were
    the parent killed in between (distill killed, or failing here), the child would be
    left blocked forever, or, once ``--block-fd`` reads end-of-file, would run the
    command with no one left to stop it. As the first process of a PID namespace,
    bubblewrap takes every process in it down when it dies, and it dies with us.

    bubblewrap names its child by its pid in that namespace (2) and reads
    ``/proc/2/ns`` (for ``--info-fd``): with the host's /proc that is another process
    (the kernel's kthreadd on a host; nothing in a container, where every RUN failed).
    So it starts in a mount namespace of its own with a /proc of its PID namespace
    (util-linux ``unshare --mount-proc``, as root), then drops to the ``user``,
    ``group`` and ``extra_groups`` given (``setpriv``) and execs bubblewrap, which
    stays that namespace's first process. A fresh /proc is also one no container
    runtime has masked, which bubblewrap needs to mount the sandbox's own.
    Where a PID namespace cannot be made (no privilege), it starts as it is.

    Rootless, the thread cannot return to the PID namespace it left (that takes
    privilege over the host's), so a thread of its own starts bubblewrap and lives as
    long as it does (a parent-death signal follows the thread that forked).
    """
    if not setgroups_allowed():
        popen.pop("extra_groups", None)
    if not rootless.own_proc_possible():
        return subprocess.Popen(argv, **popen)   # bubblewrap binds the container's /proc
    if rootless.active():
        return _start_from_own_thread(argv, popen)
    own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _libc.unshare(_libc.CLONE_NEWPID)   # for this thread's next child only
        except OSError:
            return subprocess.Popen(argv, **popen)
        try:
            return subprocess.Popen(_with_own_proc(argv, popen), **popen)
        finally:
            _libc.setns(own, _libc.CLONE_NEWPID)
    finally:
        os.close(own)


def _start_from_own_thread(argv: list[str], popen: dict[str, Any]) -> subprocess.Popen[bytes]:
    started: queue.Queue[subprocess.Popen[bytes] | BaseException] = queue.Queue()

    def spawn() -> None:
        try:
            try:
                _libc.unshare(_libc.CLONE_NEWPID)
                proc = subprocess.Popen(_with_own_proc(argv, popen), **popen)
            except OSError:  # no PID namespace here (a container forbids it)
                proc = subprocess.Popen(argv, **popen)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            started.put(exc)
            return
        started.put(proc)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # not reaped: Popen does

    threading.Thread(target=spawn, name="bwrap-spawn", daemon=True).start()
    result = started.get()
    if isinstance(result, BaseException):
        raise result
    return result


def setgroups_allowed() -> bool:
    """Whether this process may call setgroups(2): not in a user namespace whose gid map
    was written without a helper (rootless with no subordinate ids: "deny")."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _with_own_proc(argv: list[str], popen: dict[str, Any]) -> list[str]:
    """``argv`` behind ``unshare --mount-proc`` and ``setpriv`` (see :func:`start`);
    takes the identity out of ``popen``, for setpriv to set after the mount."""
    user, group = popen.pop("user", None), popen.pop("group", None)
    groups = popen.pop("extra_groups", None) or []
    if user is None or group is None:
        raise SandboxError("bubblewrap is started with a user and a group")
    ids = [f"--reuid={int(user)}", f"--regid={int(group)}",
           f"--groups={','.join(str(int(g)) for g in groups)}" if groups else
           "--clear-groups" if setgroups_allowed() else "--keep-groups"]
    return [UNSHARE, "--mount", "--propagation", "private", "--mount-proc", "--",
            SETPRIV, *ids, "--", *argv]


def child_of(bwrap_pid: int) -> int:
    """The host pid of bubblewrap's child (its ``--info-fd`` numbers the child in its
    own PID namespace, see :func:`start`)."""
    try:
        with open(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children") as f:
            pids = f.read().split()
    except OSError as exc:
        raise SandboxError(f"cannot find the sandbox's process: {exc}") from exc
    if len(pids) != 1:
        raise SandboxError(f"bubblewrap has {len(pids)} child processes, not one")
    return int(pids[0])


def write_maps(pid: int, bwrap_pid: int, mapping: bytes, gid_mapping: bytes | None = None) -> None:
    """Write ``mapping`` as the uid map (and, unless ``gid_mapping`` differs, the gid
    map) of the user namespace of ``pid``, bubblewrap's child (from :func:`child_of`).

    The child is blocked until we unblock it, and cannot be reaped while bubblewrap
    waits for us; still, check through a /proc/PID handle that it is bubblewrap's
    child before writing through that handle. If a map cannot be written, the child
    is killed.
    """
    try:
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cannot map ids for the sandbox: {exc}") from exc
    try:
        if _parent(proc) != bwrap_pid:
            raise SandboxError(f"cannot map ids for the sandbox: {pid} is not bwrap's child")
        try:
            for name, lines in (("uid_map", mapping), ("gid_map", gid_mapping or mapping)):
                fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc)
                try:
                    os.write(fd, lines)  # one write: the kernel takes the map whole
                finally:
                    os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            raise SandboxError(f"cannot map ids for the sandbox: {exc}") from exc
    finally:
        os.close(proc)


def _parent(proc: int) -> int | None:
    """The parent pid of the process whose /proc directory is open as ``proc``."""
    try:
        fd = os.open("status", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        with os.fdopen(fd, "rb") as f:
            for line in f:
                if line.startswith(b"PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
