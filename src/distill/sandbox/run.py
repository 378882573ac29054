"""Run a process in a root filesystem with bubblewrap, never as host root.

Isolation is at least that of a Docker RUN step, and the sandbox's root is not
the host's: every RUN lives in a user namespace whose ids are shifted into an
unprivileged host range (:mod:`~distill.sandbox._idmap`, :mod:`~distill.sandbox._userns`),
with Docker's default capabilities for container root inside it and none for
other users, the system calls Docker's default seccomp profile refuses refused
(:mod:`~distill.sandbox._seccomp`), ``no_new_privs`` (bubblewrap always sets it, so setuid binaries never
gain privileges), own PID, IPC and UTS namespaces, a fresh /dev and /proc, the
host's DNS configuration, and a network namespace of its own: with outbound access
through pasta by default (:mod:`~distill.sandbox._network`), with only a loopback
for ``network="none"``; only ``network="host"`` shares the host's.

The root filesystem is shown to the sandbox through an idmapped view: an overlay
mounted with ``overlay_mount(..., sandbox=ids)`` (``idmapped=True``), or any plain
directory, which is bind-mounted idmapped here. Either way the view is attached
under a fresh 0711 directory in /run, which bubblewrap (running as the range's
unprivileged root) can reach.

The process gets the identity runc gives a container process: uid, gid and
the supplementary groups ``{gid} | groups`` (the caller resolves ``groups``
from the image's /etc/group; the primary gid is always added, as containerd
does).

The working directory is resolved inside the root filesystem before bubblewrap
starts (symlinks followed as if chrooted) and must not lie in /proc or /dev: what
bubblewrap changes into is a path of plain directories, so no magic link (such as
``/proc/self/fd/N``, one of bubblewrap's own descriptors) can lead it outside.

``mounts`` (``RUN --mount``) are made by distill itself in the view before
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
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill import owned
from distill.errors import SandboxError
from distill.sandbox import _idmap, _libc, _network, _seccomp, _userns, rootless
from distill.sandbox._fds import Fds, OutputSink, relay
from distill.sandbox._idmap import IdRange
from distill.sandbox._mounts import SandboxMount, mounted, validate_mounts
from distill.sandbox._rootfs import make_dirs

__all__ = ["DEFAULT_CAPABILITIES", "HOST_FILES", "RunSpec", "SandboxMount", "bwrap_argv",
           "run_in_rootfs", "sandbox_ids", "supplementary_groups"]

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

#: Host files the name resolution of a sandbox may need (a RUN binds /etc/resolv.conf,
#: and gets an /etc/hosts of its own: see :func:`hosts_file`).
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
_BOUND_HOST_FILES = ("/etc/resolv.conf",)
HOSTS = "/etc/hosts"


def hosts_file(hostname: str) -> bytes:
    """A RUN's /etc/hosts, as BuildKit writes it: the loopback names and the sandbox's
    own hostname (so that it resolves), nothing of the host's."""
    return f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n" \
        .encode()

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
    #: Directories created in the rootfs (if missing) and left there, as runc leaves
    #: its mount points.
    keep_dirs: tuple[str, ...] = ()


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


def bwrap_path() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed",
            hint="install it: apt-get install bubblewrap",
        )
    return found


@functools.cache
def sandbox_ids() -> IdRange:
    """The host id range every RUN of this process lives in."""
    return _idmap.sandbox_range()


def bwrap_argv(
    bwrap: str,
    rootfs: Path,
    spec: RunSpec,
    status_fd: int,
    mount_points: dict[str, str] | None = None,
    *,
    userns_fds: tuple[int, int] | None = None,
    args_fd: int | None = None,
    cwd: str | None = None,
    start_fd: int | None = None,
    seccomp_fd: int | None = None,
    hosts_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line for ``spec`` (exposed for tests and debugging).

    ``mount_points`` maps "/dev", "/proc" and the host files to the paths to
    mount on inside the rootfs (symlinks already resolved); identity by default.
    ``userns_fds`` (block fd, info fd) makes bwrap wait until the caller has
    written the user namespace's id maps. ``args_fd`` holds more arguments
    (``spec.secret_env`` as ``--setenv``), NUL-separated. ``cwd`` is the working
    directory already resolved inside the rootfs (default: ``spec.cwd``).
    ``start_fd`` makes bwrap wait, with the sandbox set up, until the caller lets
    the command start (after attaching its network, see :mod:`~distill.sandbox._network`). ``seccomp_fd``
    holds the compiled seccomp filter (see :mod:`~distill.sandbox._seccomp`);
    ``hosts_fd`` the sandbox's /etc/hosts (see :func:`hosts_file`).
    """
    where = {p: p for p in ("/dev", "/proc", *HOST_FILES)} | (mount_points or {})
    # a /proc of the RUN's own PID namespace; where the container forbids one, its own
    proc = ["--proc", where["/proc"]] if rootless.own_proc_possible() else \
        ["--bind", "/proc", where["/proc"]]
    argv = [bwrap, "--bind", str(rootfs), "/", "--dev", where["/dev"], *proc]
    for host_file in _BOUND_HOST_FILES:
        if os.path.exists(host_file):
            argv += ["--ro-bind", host_file, where[host_file]]
    if hosts_fd is not None:
        argv += ["--perms", "0644", "--ro-bind-data", str(hosts_fd), where[HOSTS]]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname]
    # a session of its own: no controlling terminal (a RUN could push keystrokes into the
    # user's shell with TIOCSTI, or read what the user types) and no process group shared
    # with distill (rootless, a RUN's root is the user's uid and could signal that group)
    argv += ["--die-with-parent", "--new-session"]
    if spec.network != "host":
        argv.append("--unshare-net")
    argv += ["--unshare-user", "--uid", str(spec.uid), "--gid", str(spec.gid)]
    if userns_fds is not None:
        argv += ["--userns-block-fd", str(userns_fds[0]), "--info-fd", str(userns_fds[1])]
    if start_fd is not None:
        argv += ["--block-fd", str(start_fd)]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--cap-drop", "ALL"]
    if spec.uid == 0:
        for cap in DEFAULT_CAPABILITIES:
            argv += ["--cap-add", cap]
    argv.append("--clearenv")
    for name, value in spec.env.items():
        argv += ["--setenv", name, value]
    if args_fd is not None:
        argv += ["--args", str(args_fd)]
    argv += ["--chdir", cwd or spec.cwd, "--json-status-fd", str(status_fd), "--", *spec.argv]
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


def _check_ids(spec: RunSpec, ids: IdRange) -> None:
    for what, value in (("uid", spec.uid), ("gid", spec.gid),
                        *(("group", g) for g in spec.groups or ())):
        if not ids.contains(value):
            raise SandboxError(f"{what} {value} is outside the ids a RUN step can use "
                               f"(0 to {ids.count - 1})")


def _remove_view_dir(base: Path) -> None:
    """What a killed distill left of a view: two empty directories (its mounts lived in
    its own mount namespace, gone with it). Never rmtree: see :func:`_sandbox_view`."""
    with suppress(OSError):
        os.rmdir(base / "root")
    os.rmdir(base)


@functools.cache
def _sweep_views(parent: str) -> None:
    owned.sweep("distill-run-", parent, _remove_view_dir, private=False)


@contextmanager
def _sandbox_view(rootfs: Path, ids: IdRange, idmapped: bool) -> Iterator[Path]:
    """``rootfs`` as the sandbox sees it, attached under a fresh 0711 directory in /run.

    bubblewrap runs as the range's unprivileged root and must reach the view;
    a plain directory is bind-mounted idmapped, an overlay mounted for the
    sandbox (already idmapped) is bind-mounted as it is.
    """
    candidates = ("/run", tempfile.gettempdir())  # rootless: /run is not ours to write
    parent = next((c for c in candidates
                   if os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK)), None)
    if parent is None:
        raise SandboxError("no directory to mount the sandbox's root filesystem under")
    _sweep_views(parent)
    base = owned.make_dir("distill-run-", parent)
    try:
        os.chmod(base, 0o711)
        target = base / "root"
        target.mkdir(mode=0o755)
        if idmapped or not ids.shifted:
            try:
                _libc.mount(str(rootfs), target, None, _libc.MS_BIND, None)
            except OSError as exc:
                raise SandboxError(f"cannot bind-mount the rootfs: {exc.strerror}") from exc
        else:
            _idmap.bind_idmapped(rootfs, target, ids)
        try:
            yield target
        finally:
            _libc.umount2(target, _libc.MNT_DETACH)
    finally:
        # Never rmtree here: if the unmount failed, that would empty the rootfs.
        for leftover in (base / "root", base):
            with suppress(OSError):
                os.rmdir(leftover)


class ProcessGroup:
    """The sandboxed processes of one build. ``kill_all`` ends every one that runs and
    refuses new ones: when a stage fails, the others stop at once, as BuildKit
    cancels them (each process is the first of its own PID namespace, so killing it
    ends everything the RUN started)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.cancelled = False

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.add(proc)
            if self.cancelled:
                proc.kill()

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    def check(self) -> None:
        if self.cancelled:
            raise SandboxError("cancelled: another stage of the build failed")

    def kill_all(self) -> None:
        with self._lock:
            self.cancelled = True
            for proc in self._running:
                if proc.poll() is None:
                    proc.kill()


def run_in_rootfs(rootfs: Path, spec: RunSpec, *, stdout: OutputSink | None = None,
                  idmapped: bool = False, group: ProcessGroup | None = None) -> int:
    """Run ``spec`` inside bubblewrap with ``rootfs`` as "/" and return its exit code.

    A non-zero exit is returned, not raised. Combined stdout and stderr go to
    ``stdout`` if given, else to this process's standard output. ``idmapped``
    says ``rootfs`` is an overlay mounted for the sandbox (``overlay_mount(...,
    sandbox=sandbox_ids())``); otherwise it is a plain directory. The working
    directory is created (0755, root) if missing, before ``spec.mounts`` are
    mounted. Mount points the run needs are created for it and removed
    afterwards if still empty, so they do not leak into the layer. Raises
    SandboxError if bwrap is missing or cannot set up the sandbox. ``group``: the
    build's processes (a cancelled group starts nothing, and kills this one).
    """
    _validate(spec)
    if group is not None:
        group.check()
    bwrap = bwrap_path()
    if spec.network == "default":
        _network.check_available()
    ids = sandbox_ids()
    _check_ids(spec, ids)
    rootfs = Path(rootfs)
    if not rootfs.is_dir():
        raise SandboxError(f"root filesystem {rootfs} is not a directory")
    with _sandbox_view(rootfs, ids, idmapped) as view:
        with _idmap.as_container_root(ids):
            for path in (*spec.keep_dirs, spec.cwd):
                make_dirs(view, path)
        extra = [("/dev", True), ("/proc", True), (HOSTS, False),
                 *((path, False) for path in _BOUND_HOST_FILES if os.path.exists(path))]
        with mounted(view, spec.mounts, ids, cwd=spec.cwd, extra=extra) as prepared:
            return _spawn(bwrap, view, spec, prepared.points, stdout, ids, prepared.cwd,
                          group)


def _identity(spec: RunSpec, ids: IdRange) -> dict[str, Any]:
    """Popen arguments starting bwrap as the run's user and groups, shifted into ``ids``.

    bubblewrap (unprivileged here) creates the user namespace and keeps the ids it
    was started with, which our maps show inside as the run's own; groups are set
    before exec and inherited (bwrap never calls setgroups).
    """
    return {"user": ids.base + spec.uid, "group": ids.base + spec.gid,
            "extra_groups": [ids.base + g for g in supplementary_groups(spec)]}


def _spawn(
    bwrap: str,
    rootfs: Path,
    spec: RunSpec,
    mount_points: dict[str, str],
    stdout: OutputSink | None,
    ids: IdRange,
    cwd: str,
    group: ProcessGroup | None = None,
) -> int:
    """Start bwrap, relay its output, and return the command's exit code."""
    with Fds() as fds:
        status_r, status_w = fds.pipe()
        child_fds = [status_w]
        block_r, block_w = fds.pipe()
        info_r, info_w = fds.pipe()
        userns_fds = (block_r, info_w)  # bwrap's ends: block fd, info fd
        child_fds += userns_fds
        args_fd = None
        if spec.secret_env:
            args_fd = fds.memfd(b"".join(
                b"--setenv\0%s\0%s\0" % (os.fsencode(k), os.fsencode(v))
                for k, v in spec.secret_env.items()))
            child_fds.append(args_fd)
        seccomp_fd = fds.memfd(_seccomp.filter_bpf())
        hosts_fd = fds.memfd(hosts_file(spec.hostname))
        child_fds += [seccomp_fd, hosts_fd]
        argv = bwrap_argv(bwrap, rootfs, spec, status_w, mount_points, userns_fds=userns_fds,
                          args_fd=args_fd, cwd=cwd, start_fd=block_r, seccomp_fd=seccomp_fd,
                          hosts_fd=hosts_fd)
        try:
            proc = _userns.start(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=child_fds,
                cwd="/",
                env={},
                **_identity(spec, ids),
            )
        except OSError as exc:
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            fds.close(*child_fds)  # only bwrap may hold them, or our reads never end
        assert proc.stdout is not None
        if group is not None:
            group.add(proc)
        try:
            pid = _map_ids(info_r, block_w, ids, proc.pid)
            with ExitStack() as network:
                # The same pipe is bwrap's --block-fd, read (then closed) just before the
                # command starts: the command inherits no descriptor of ours.
                if pid is not None and (spec.network != "default" or
                                        _attach_network(network, proc, pid, spec, ids)):
                    os.write(block_w, b"1")
                fds.close(block_w)
                tail = relay(proc.stdout.fileno(), stdout)
                returncode = proc.wait()
        finally:
            if group is not None:
                group.discard(proc)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if group is not None:
            group.check()     # killed because another stage failed: not this RUN's fault
        status = b""
        while chunk := os.read(status_r, 4096):
            status += chunk
    code = _exit_code(status)
    return code if code is not None else _failure(returncode, tail)


def _attach_network(stack: ExitStack, proc: subprocess.Popen[bytes], pid: int,
                    spec: RunSpec, ids: IdRange) -> bool:
    """Attach pasta to the sandbox ``pid``; False if bwrap failed meanwhile (its own
    error then says why, better than pasta's)."""
    try:
        stack.enter_context(_network.attached(pid, ids.base + spec.uid, ids.base + spec.gid))
    except SandboxError:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        if proc.returncode is None:
            raise
        return False
    return True


def _map_ids(info_fd: int, block_fd: int, ids: IdRange, bwrap_pid: int) -> int | None:
    """Map the ids of the user namespace bwrap made, then let bwrap go on; the
    sandbox's pid.

    With no info, bwrap failed before creating it, and its exit status says
    why; unblocked without maps, bwrap cannot switch to the uid and fails.
    """
    if _userns.read_info(info_fd) is None:
        return None
    pid = _userns.child_of(bwrap_pid)
    _userns.write_maps(pid, bwrap_pid, ids.map_lines("uid"), ids.map_lines("gid"))
    os.write(block_fd, b"1")
    return pid
