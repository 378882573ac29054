"""Run a process in a root filesystem with bubblewrap.

Isolation is that of a Docker RUN step: own PID, IPC and UTS namespaces,
a fresh /dev and /proc, the host's DNS configuration, the host network
unless ``network="none"``, Docker's default capability set for root.

A non-root ``uid`` runs bubblewrap itself as that uid in a user namespace
mapping uid N inside to uid N outside, so files it creates are owned by N in
the overlay upper directory. Two consequences: bubblewrap must be able to
reach the rootfs as uid N (when an ancestor directory is closed to N, the
rootfs is bind-mounted for the run under a 0711 directory in /run or /tmp),
and inside the sandbox files of other owners show up as the overflow uid
(65534, "nobody"), as in any rootless container.
"""

from __future__ import annotations

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
from typing import BinaryIO

from distill.errors import SandboxError
from distill.sandbox import _libc
from distill.sandbox._rootfs import MountStubs, make_dirs

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
_TAIL = 8192


@dataclass(frozen=True)
class RunSpec:
    """What to run: the exact argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    network: str = "default"
    hostname: str = "distill"


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
    for name in spec.env:
        if not name or "=" in name or "\0" in name:
            raise SandboxError(f"invalid environment variable name {name!r}")
    if spec.uid < 0 or spec.gid < 0:
        raise SandboxError(f"invalid uid/gid {spec.uid}:{spec.gid}")


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
) -> list[str]:
    """The bubblewrap command line for ``spec`` (exposed for tests and debugging).

    ``mount_points`` maps "/dev", "/proc" and the host files to the paths to
    mount on inside the rootfs (symlinks already resolved); identity by default.
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
    else:
        argv += ["--cap-drop", "ALL"]
        for cap in DEFAULT_CAPABILITIES:
            argv += ["--cap-add", cap]
    argv.append("--clearenv")
    for name, value in spec.env.items():
        argv += ["--setenv", name, value]
    argv += ["--chdir", spec.cwd, "--json-status-fd", str(status_fd), "--", *spec.argv]
    return argv


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _relay(source: int, sink: BinaryIO | None) -> bytes:
    """Copy the process output to ``sink`` (or our fd 1) until EOF; return its tail."""
    tail = bytearray()
    while chunk := os.read(source, 65536):
        if sink is not None:
            sink.write(chunk)
        else:
            _write_all(1, chunk)
        tail += chunk
        del tail[:-_TAIL]
    if sink is not None and hasattr(sink, "flush"):
        sink.flush()
    return bytes(tail)


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


def _traversable(path: Path, uid: int, gid: int) -> bool:
    """Can uid:gid (no supplementary groups) search every directory down to ``path``?"""
    current = Path(os.path.realpath(path))
    for directory in (current, *current.parents):
        try:
            st = os.stat(directory)
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


@contextmanager
def _reachable(rootfs: Path, uid: int, gid: int) -> Iterator[Path]:
    """``rootfs`` at a path uid:gid can reach: itself, or a temporary bind mount."""
    if uid == 0 or _traversable(rootfs, uid, gid):
        yield rootfs
        return
    candidates = ("/run", "/tmp", tempfile.gettempdir())
    parent = next((c for c in candidates if _traversable(Path(c), uid, gid)), None)
    if parent is None:
        raise SandboxError(f"no directory reachable by uid {uid} to mount the rootfs under")
    base = Path(tempfile.mkdtemp(prefix="distill-run-", dir=parent))
    try:
        os.chmod(base, 0o711)
        target = base / "root"
        target.mkdir(mode=0o755)
        try:
            _libc.mount(str(rootfs), target, None, _libc.MS_BIND, None)
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
    directory is created (0755, root) if missing. Mount points bubblewrap
    needs are created for the run and removed afterwards if still empty, so
    they do not leak into the layer. Raises SandboxError if bwrap is missing
    or cannot set up the sandbox.
    """
    _validate(spec)
    bwrap = _bwrap()
    rootfs = Path(rootfs)
    if not rootfs.is_dir():
        raise SandboxError(f"root filesystem {rootfs} is not a directory")
    stubs = MountStubs(rootfs)
    try:
        where = {path: stubs.add(path, is_dir=True) for path in ("/dev", "/proc")}
        for path in HOST_FILES:
            if os.path.exists(path):
                where[path] = stubs.add(path, is_dir=False)
        make_dirs(rootfs, spec.cwd)
        stubs.setup_done()
        with _reachable(rootfs, spec.uid, spec.gid) as reachable:
            return _spawn(bwrap, reachable, spec, where, stdout)
    finally:
        stubs.remove()


def _spawn(
    bwrap: str,
    rootfs: Path,
    spec: RunSpec,
    mount_points: dict[str, str],
    stdout: BinaryIO | None,
) -> int:
    """Start bwrap, relay its output, and return the command's exit code."""
    status_r, status_w = os.pipe()
    # Non-root: bwrap itself runs as uid:gid (no supplementary groups) and maps
    # that id to itself in a user namespace. Root with a gid: only switch group.
    user = spec.uid if spec.uid != 0 else None
    group = spec.gid if spec.uid != 0 or spec.gid != 0 else None
    extra_groups: list[int] | None = [] if group is not None else None
    try:
        try:
            proc = subprocess.Popen(
                bwrap_argv(bwrap, rootfs, spec, status_w, mount_points),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(status_w,),
                cwd="/",
                env={},
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            os.close(status_w)
        assert proc.stdout is not None
        try:
            tail = _relay(proc.stdout.fileno(), stdout)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        status = b""
        while chunk := os.read(status_r, 4096):
            status += chunk
    finally:
        os.close(status_r)
    code = _exit_code(status)
    return code if code is not None else _failure(returncode, tail)
