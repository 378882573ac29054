"""Give this process a private mount namespace.

Every overlay mount distill makes then lives only in this namespace: when the
process dies (even by SIGKILL), the kernel tears the namespace down and the
mounts vanish with it. Nothing leaks into the host's mount table.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill.errors import SandboxError
from distill.sandbox import _libc


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _all_mounts_private() -> bool:
    """True if no mount in our namespace propagates to (or from) a peer group."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Fields 7.. up to the " - " separator are the optional propagation tags.
        before_sep = line.split(" - ", 1)[0].split()
        optional = before_sep[6:]
        if any(tag.startswith(("shared:", "master:")) for tag in optional):
            return False
    return True


def _already_private() -> bool:
    """Our mount namespace is not our parent's and nothing in it propagates."""
    own, parent = _mount_ns("self"), _mount_ns(os.getppid())
    return own is not None and parent is not None and own != parent and _all_mounts_private()


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def ensure_private_mount_namespace() -> None:
    """Move this process into its own mount namespace with private propagation.

    Idempotent: a second call notices the namespace is already private and
    returns. Must be called before any thread is started, because unshare(2)
    with CLONE_NEWNS only moves the calling thread. Raises SandboxError when
    the process is multi-threaded or lacks CAP_SYS_ADMIN.
    """
    if _already_private():
        return
    if _thread_count() > 1:
        raise SandboxError(
            "cannot create a private mount namespace: the process already runs "
            f"{_thread_count()} threads",
            hint="call ensure_private_mount_namespace() at start-up, before threads exist",
        )
    try:
        _libc.unshare(_libc.CLONE_NEWNS)
    except OSError as exc:
        raise SandboxError(
            f"cannot create a private mount namespace ({exc.strerror})",
            hint="distill mounts overlay filesystems: run it as root, or as an ordinary user "
                 "(it then makes a user namespace of its own; see docs/rootless.md)",
        ) from exc
    try:
        _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE, None)
    except OSError as exc:
        raise SandboxError(
            f"cannot make mounts private in the new mount namespace ({exc.strerror})"
        ) from exc
