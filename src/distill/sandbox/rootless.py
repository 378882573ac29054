"""Rootless distill: an ordinary user re-executes distill as root of a user namespace.

Run by a user who is not root, distill re-executes itself (before anything starts a
thread) through util-linux ``unshare`` into a new user namespace and mount namespace:

* with a subordinate id range (``/etc/subuid`` and ``/etc/subgid``, mapped by the setuid
  ``newuidmap``/``newgidmap`` of Debian's ``uidmap``), namespace id 0 is the user and ids
  1 .. 65535 are the first 65535 of the range (``unshare --map-auto --map-root-user``,
  as ``podman unshare`` does);
* with none, namespace id 0 is the user and no other id exists (``--map-root-user``):
  images whose files all belong to root still build; any other owner is a clear error
  naming the path.

Inside, distill holds every capability over what the namespace owns: it mounts overlayfs
(with ``userxattr``, see :mod:`~distill.sandbox.overlay`), creates files with any mapped
owner, and nests each RUN in a user namespace of its own (see
:mod:`~distill.sandbox._idmap`). Files keep their container ids as seen from inside: a
``chown 1000`` in a RUN is uid 1000 in the layer (host uid ``subuid_start + 999``).

The exec replaces the process (no wrapper stays behind), so exit codes and signals reach
the caller as they are. A marker in the environment stops a second re-exec.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from distill.errors import SandboxError

#: set in the re-executed process's environment: "this is distill's own namespace"
MARKER = "_DISTILL_USERNS"
UNSHARE = "/usr/bin/unshare"


def _full_identity(uid_map: str) -> bool:
    """Whether ``uid_map`` is the initial namespace's: every id mapped to itself."""
    return any(line.split() == ["0", "0", "4294967295"] for line in uid_map.splitlines())


@functools.cache
def active() -> bool:
    """Whether this process runs rootless: inside a user namespace that does not map the
    host's ids (its own, made by :func:`reexec`, or one a container runtime made)."""
    try:
        text = Path("/proc/self/uid_map").read_text()
    except OSError:
        return False
    return not _full_identity(text)


def needs_reexec() -> bool:
    """Whether distill must move into a user namespace of its own before it can mount."""
    return os.geteuid() != 0 and os.environ.get(MARKER) != "1"


def _user_names(uid: int) -> set[str]:
    names = {str(uid)}
    try:
        names.add(pwd.getpwuid(uid).pw_name)
    except KeyError:
        pass
    return names


def subordinate_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first range ``(start, count)`` the subordinate id file ``path`` gives the user
    ``uid`` (listed by name or number), or None."""
    names = _user_names(uid)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in names:
            try:
                start, count = int(fields[1]), int(fields[2])
            except ValueError:
                continue
            if count > 0:
                return start, count
    return None


def unshare_argv(argv: list[str], uid: int) -> list[str]:
    """The command that runs ``argv`` as root of a new user and mount namespace."""
    has_range = all(subordinate_range(f, uid) for f in ("/etc/subuid", "/etc/subgid"))
    helpers = all(shutil.which(h) for h in ("newuidmap", "newgidmap"))
    mapping = ["--map-auto", "--map-root-user"] if has_range and helpers else \
        ["--map-root-user"]
    return [UNSHARE, *mapping, "--mount", "--propagation", "private", "--", *argv]


def reexec() -> NoReturn:
    """Replace this process by distill run as root of its own user namespace."""
    if not os.path.exists(UNSHARE):
        raise SandboxError("rootless builds need util-linux's unshare",
                           hint="apt-get install util-linux (and uidmap for a subordinate "
                                "id range)")
    argv = unshare_argv([sys.executable, *sys.orig_argv[1:]], os.getuid())
    env = {**os.environ, MARKER: "1"}
    if "HOME" not in env:   # inside, uid 0's home would be /root: keep the user's own
        env["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(UNSHARE, argv, env)
    except OSError as exc:
        raise SandboxError(f"cannot start distill in a user namespace: {exc.strerror}") from exc


def check_entered() -> None:
    """After :func:`reexec`: fail clearly if the namespace could not be made (``unshare``
    itself reports why on stderr and exits; this catches a marker without a namespace)."""
    if os.environ.get(MARKER) == "1" and os.geteuid() != 0:
        raise SandboxError(
            "distill is not root of its user namespace",
            hint="are unprivileged user namespaces disabled (sysctl "
                 "kernel.unprivileged_userns_clone, user.max_user_namespaces)?")


def chown(target: str | os.PathLike[str] | int, uid: int, gid: int, what: str) -> None:
    """``lchown`` (``fchown`` for a descriptor); rootless, an owner the user namespace has
    no id for (the kernel says EINVAL) is a clear error naming ``what``."""
    try:
        if isinstance(target, int):
            os.fchown(target, uid, gid)
        else:
            os.lchown(target, uid, gid)
    except OSError as exc:
        message = unmapped_owner(what, uid, gid) if exc.errno == errno.EINVAL else None
        if message is None:
            raise
        raise SandboxError(message, hint=owner_hint(uid, gid)) from exc


def unmapped_owner(what: str, uid: int, gid: int) -> str | None:
    """The message for a file ``what`` whose owner ``uid:gid`` this rootless build cannot
    give (the kernel says EINVAL), or None when distill is not rootless."""
    if not active():
        return None
    return f"{what} belongs to uid {uid}, gid {gid}, which this rootless build has no id for"


def mapped_ids() -> int:
    """How many ids (0 .. n-1) this namespace maps without a gap, uids and gids alike."""
    from distill.sandbox._idmap import sandbox_range

    try:
        return sandbox_range().count
    except (OSError, SandboxError):
        return 1


def owner_hint(uid: int, gid: int) -> str:
    """What gets a rootless build ids for owner ``uid:gid``: with one id only, a
    subordinate range for the user; past the range, nothing but root."""
    count = mapped_ids()
    if count <= 1:
        return (f"this user has no subordinate id range (/etc/subuid and /etc/subgid), so a "
                "rootless build has only root's id; ask for a range of 65536 ids no other "
                f"user has (usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST "
                f"{_user_name()}), or build as root")
    return (f"a rootless build maps container ids 0-{count - 1} (the user and its "
            f"subordinate range); an owner of {max(uid, gid)} needs a build as root")


def _user_name() -> str:
    """The name of the user distill runs for: namespace id 0 is that user's host id."""
    try:
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, outside, _count = line.split()
            if inside == "0":
                return pwd.getpwuid(int(outside)).pw_name
    except (OSError, ValueError, KeyError):
        pass
    return "USER"


@functools.cache
def own_proc_possible() -> bool:
    """Whether a RUN can have a PID namespace with a /proc of its own here. Not inside a
    container whose /proc is partly masked (Docker's, a pod's): the kernel then refuses
    a new proc mount to a user namespace, and a RUN shares the container's /proc."""
    if not active():
        return True   # as root on a host (where bubblewrap mounts its own /proc)
    try:
        done = subprocess.run([UNSHARE, "--pid", "--fork", "--mount", "--propagation",
                               "private", "--mount-proc", "true"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def notes() -> list[str]:
    """What this build does differently for running rootless, said once at its start."""
    if not active():
        return []
    said = []
    if not own_proc_possible():
        said.append("RUN shares this container's /proc and processes: the container "
                    "forbids a /proc of its own (as Kubernetes pods do unless procMount: "
                    "Unmasked)")
    return said
