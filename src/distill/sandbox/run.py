"""Run a process in a root filesystem with bubblewrap.

Isolation is that of a Docker RUN step: own PID, IPC and UTS namespaces,
a fresh /dev and /proc, the host's DNS configuration, the host network
unless ``network="none"``, Docker's default capability set for root.

The process gets the identity runc gives a container process: uid, gid and
the supplementary groups ``{gid} | groups`` (the caller resolves ``groups``
from the image's /etc/group; the primary gid is always added, as containerd
does). Root runs without a user namespace. A non-root uid runs in a user
namespace owned by root in which every id maps to itself (see
:mod:`~distill.sandbox._userns`): files it creates are owned by uid:gid in
the overlay upper directory, files of other owners keep their owner, and it
has no capabilities. bubblewrap resolves the rootfs path as that uid, so when
an ancestor directory is closed to it, the rootfs is bind-mounted for the run
under a 0711 directory in /run or /tmp.

bubblewrap always sets no_new_privs, so setuid and file-capability binaries
do not gain privileges in any RUN (Docker allows that by default).

``mounts`` (``RUN --mount``) are made by distill itself in the rootfs before
bubblewrap starts (see :mod:`~distill.sandbox._mounts`); what the command
writes under them never reaches the overlay's upper directory. ``secret_env``
is set in the command's environment without appearing on any command line:
bubblewrap reads it from an anonymous memory file (``--args FD``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from distill.errors import SandboxError
from distill.sandbox import _libc, _userns
from distill.sandbox._fds import Fds, relay
from distill.sandbox._mounts import SandboxMount, mounted, validate_mounts
from distill.sandbox._rootfs import MountStubs, make_dirs

__all__ = ["DEFAULT_CAPABILITIES", "HOST_FILES", "RunSpec", "SandboxMount", "bwrap_argv",
           "run_in_rootfs", "supplementary_groups"]

#: Docker's default capabilities for a container's root user.
DEFAULT_CAPABILITIES = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)

#: Host files bound read-only into every sandbox, so RUN can resolve names.
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")

_NETWORKS = ("default", "host", "none")
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel
_MAX_GROUPS = 65536  # NGROUPS_MAX


@dataclass(frozen=True)
class RunSpec:
    """What to run: the exact argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    #: Supplementary groups besides ``gid`` (which is always one): for Docker's
    #: rules, the gids of the /etc/group entries listing the user, when USER
    #: names no group. None or () = just ``gid``.
    groups: tuple[int, ...] | None = None
    network: str = "default"
    hostname: str = "distill"
    #: Bind and tmpfs mounts inside the rootfs for this run (``RUN --mount``).
    mounts: tuple[SandboxMount, ...] = ()
    #: Variables set like ``env`` (and over it) but never put on a command line.
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)


def _validate(spec: RunSpec) -> None:
    if not spec.argv:
        raise SandboxError("nothing to run: empty argv")
    if not spec.cwd.startswith("/"):
        raise SandboxError(f"working directory {spec.cwd!r} is not absolute")
    if spec.network not in _NETWORKS:
        raise SandboxError(
            f"unsupported network mode {spec.network!r}",
            hint="use one of: " + ", ".join(_NETWORKS),
        )
    for name in [*spec.env, *spec.secret_env]:
        if not name or "=" in name or "\0" in name:
            raise SandboxError(f"invalid environment variable name {name!r}")
    if any("\0" in value for value in spec.secret_env.values()):
        raise SandboxError("a secret environment value contains a NUL byte")
    validate_mounts(spec.mounts)
    if not (0 <= spec.uid <= _MAX_ID and 0 <= spec.gid <= _MAX_ID):
        raise SandboxError(f"invalid uid/gid {spec.uid}:{spec.gid}")
    groups = spec.groups or ()
    if any(not 0 <= g <= _MAX_ID for g in groups) or len(groups) > _MAX_GROUPS:
        raise SandboxError(f"invalid supplementary groups {groups!r}")


def supplementary_groups(spec: RunSpec) -> list[int]:
    """The process's supplementary groups: ``gid`` and ``spec.groups``, sorted, once each."""
    return sorted({spec.gid, *(spec.groups or ())})


def _bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed",
            hint="install it: apt-get install bubblewrap",
        )
    return found


def bwrap_argv(
    bwrap: str,
    rootfs: Path,
    spec: RunSpec,
    status_fd: int,
    mount_points: dict[str, str] | None = None,
    *,
    userns_fds: tuple[int, int] | None = None,
    args_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line for ``spec`` (exposed for tests and debugging).

    ``mount_points`` maps "/dev", "/proc" and the host files to the paths to
    mount on inside the rootfs (symlinks already resolved); identity by default.
    ``userns_fds`` (block fd, info fd) makes bwrap wait, for a non-root uid,
    until the caller has written the user namespace's id maps. ``args_fd``
    holds more arguments (``spec.secret_env`` as ``--setenv``), NUL-separated.
    """
    where = {p: p for p in ("/dev", "/proc", *HOST_FILES)} | (mount_points or {})
    argv = [bwrap, "--bind", str(rootfs), "/", "--dev", where["/dev"], "--proc", where["/proc"]]
    for host_file in HOST_FILES:
        if os.path.exists(host_file):
            argv += ["--ro-bind", host_file, where[host_file]]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname]
    argv += ["--die-with-parent"]
    if spec.network == "none":
        argv.append("--unshare-net")
    if spec.uid != 0:
        argv += ["--unshare-user", "--uid", str(spec.uid), "--gid", str(spec.gid)]
        if userns_fds is not None:
            argv += ["--userns-block-fd", str(userns_fds[0]), "--info-fd", str(userns_fds[1])]
    else:
        argv += ["--cap-drop", "ALL"]
        for cap in DEFAULT_CAPABILITIES:
            argv += ["--cap-add", cap]
    argv.append("--clearenv")
    for name, value in spec.env.items():
        argv += ["--setenv", name, value]
    if args_fd is not None:
        argv += ["--args", str(args_fd)]
    argv += ["--chdir", spec.cwd, "--json-status-fd", str(status_fd), "--", *spec.argv]
    return argv


def _exit_code(status: bytes) -> int | None:
    """The child's exit code from bwrap's --json-status-fd output, if it ran."""
    for line in status.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "exit-code" in record:
            return int(record["exit-code"])
    return None


def _failure(returncode: int, tail: bytes) -> int:
    """Map a run that never reached the command to an exit code or SandboxError.

    bwrap reports no exit code when its setup failed or when execvp failed.
    A command that cannot be executed is the user's error, reported like a
    shell does (127 not found, 126 not executable); the rest is ours.
    """
    lines = [ln for ln in tail.decode(errors="replace").splitlines() if ln.startswith("bwrap:")]
    message = lines[-1] if lines else f"bwrap exited with status {returncode}"
    if "execvp" in message:
        return 127 if "No such file" in message else 126
    raise SandboxError(f"could not set up the sandbox: {message}")


def _traversable(path: Path, uid: int, groups: list[int]) -> bool:
    """Can ``uid`` with ``groups`` search every directory down to ``path``?"""
    current = Path(os.path.realpath(path))
    for directory in (current, *current.parents):
        try:
            st = os.stat(directory)
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


@contextmanager
def _reachable(rootfs: Path, uid: int, groups: list[int]) -> Iterator[Path]:
    """``rootfs`` at a path ``uid`` can reach: itself, or a temporary bind mount.

    In its setuid mode bubblewrap resolves mount sources as the real user,
    without the capabilities that would let it pass a closed directory.
    """
    if uid == 0 or _traversable(rootfs, uid, groups):
        yield rootfs
        return
    candidates = ("/run", "/tmp", tempfile.gettempdir())
    parent = next((c for c in candidates if _traversable(Path(c), uid, groups)), None)
    if parent is None:
        raise SandboxError(f"no directory reachable by uid {uid} to mount the rootfs under")
    base = Path(tempfile.mkdtemp(prefix="distill-run-", dir=parent))
    try:
        os.chmod(base, 0o711)
        target = base / "root"
        target.mkdir(mode=0o755)
        try:
            # Recursive: the run's own mounts (RUN --mount) are inside the rootfs.
            _libc.mount(str(rootfs), target, None, _libc.MS_BIND | _libc.MS_REC, None)
        except OSError as exc:
            raise SandboxError(
                f"cannot bind-mount the rootfs for uid {uid}: {exc.strerror}"
            ) from exc
        try:
            yield target
        finally:
            _libc.umount2(target, _libc.MNT_DETACH)
    finally:
        # Never rmtree here: if the unmount failed, that would empty the rootfs.
        for leftover in (base / "root", base):
            with suppress(OSError):
                os.rmdir(leftover)


def run_in_rootfs(rootfs: Path, spec: RunSpec, *, stdout: BinaryIO | None = None) -> int:
    """Run ``spec`` inside bubblewrap with ``rootfs`` as "/" and return its exit code.

    A non-zero exit is returned, not raised. Combined stdout and stderr go to
    ``stdout`` if given, else to this process's standard output. The working
    directory is created (0755, root) if missing, before ``spec.mounts`` are
    mounted. Mount points the run needs are created for it and removed
    afterwards if still empty, so they do not leak into the layer. Raises
    SandboxError if bwrap is missing or cannot set up the sandbox.
    """
    _validate(spec)
    bwrap = _bwrap()
    rootfs = Path(rootfs)
    if not rootfs.is_dir():
        raise SandboxError(f"root filesystem {rootfs} is not a directory")
    make_dirs(rootfs, spec.cwd)
    with mounted(rootfs, spec.mounts):
        stubs = MountStubs(rootfs)
        try:
            where = {path: stubs.add(path, is_dir=True) for path in ("/dev", "/proc")}
            for path in HOST_FILES:
                if os.path.exists(path):
                    where[path] = stubs.add(path, is_dir=False)
            stubs.setup_done()
            with _reachable(rootfs, spec.uid, supplementary_groups(spec)) as reachable:
                return _spawn(bwrap, reachable, spec, where, stdout)
        finally:
            stubs.remove()


def _identity(spec: RunSpec) -> dict[str, Any]:
    """Popen arguments giving bwrap the run's groups and, for non-root, its uid.

    Groups are set before exec and inherited through bwrap (which never calls
    setgroups). A non-root uid N starts bwrap with real uid N and effective
    uid 0: bubblewrap's setuid mode, in which the user namespace it creates is
    owned by root and it switches to N itself once the maps are written.
    """
    identity: dict[str, Any] = {"group": spec.gid, "extra_groups": supplementary_groups(spec)}
    if spec.uid != 0:
        identity["preexec_fn"] = functools.partial(os.setresuid, spec.uid, 0, 0)
    return identity


def _spawn(
    bwrap: str,
    rootfs: Path,
    spec: RunSpec,
    mount_points: dict[str, str],
    stdout: BinaryIO | None,
) -> int:
    """Start bwrap, relay its output, and return the command's exit code."""
    with Fds() as fds:
        status_r, status_w = fds.pipe()
        child_fds = [status_w]
        userns_fds: tuple[int, int] | None = None  # bwrap's ends: block fd, info fd
        ours: tuple[int, int] | None = None  # our ends: info fd, block fd
        if spec.uid != 0:
            block_r, block_w = fds.pipe()
            info_r, info_w = fds.pipe()
            userns_fds, ours = (block_r, info_w), (info_r, block_w)
            child_fds += userns_fds
        args_fd = None
        if spec.secret_env:
            args_fd = fds.memfd(b"".join(
                b"--setenv\0%s\0%s\0" % (os.fsencode(k), os.fsencode(v))
                for k, v in spec.secret_env.items()))
            child_fds.append(args_fd)
        argv = bwrap_argv(bwrap, rootfs, spec, status_w, mount_points, userns_fds=userns_fds,
                          args_fd=args_fd)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=child_fds,
                cwd="/",
                env={},
                **_identity(spec),
            )
        except OSError as exc:
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            fds.close(*child_fds)  # only bwrap may hold them, or our reads never end
        assert proc.stdout is not None
        try:
            if ours is not None:
                _map_ids(fds, *ours)
            tail = relay(proc.stdout.fileno(), stdout)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        status = b""
        while chunk := os.read(status_r, 4096):
            status += chunk
    code = _exit_code(status)
    return code if code is not None else _failure(returncode, tail)


def _map_ids(fds: Fds, info_fd: int, block_fd: int) -> None:
    """Map the ids of the user namespace bwrap made, then let bwrap go on.

    With no info, bwrap failed before creating it, and its exit status says
    why; unblocked without maps, bwrap cannot switch to the uid and fails.
    """
    info = _userns.read_info(info_fd)
    if info is not None:
        _userns.map_identity(info)
        os.write(block_fd, b"1")
    fds.close(block_fd)
