"""The jail git runs in when ADD fetches a repository: a RUN's network, not the host's.

``ADD <git url>`` runs git on the host, for a Dockerfile nobody trusts. Checking the
remote's name before git runs cannot keep git off the host's loopback: git and curl
resolve names their own way (``*.localhost``), follow redirects, clone submodules the
repository names, and ask DNS again later. So git runs where the host's loopback does
not exist, exactly as a RUN step does (:mod:`~distill.sandbox._network`): in a network
namespace of its own, whose outbound traffic pasta relays with ``--no-map-gw``; there,
127.0.0.1 is the jail's own empty loopback, whatever name, redirect or submodule led
to it. ``network="host"`` (``--allow network.host``) shares the host's network instead.

The rest of the jail narrows what a hostile repository could make of a bug in git,
curl or ssh:

* git runs as host uid ``sandbox_ids().base``, the unprivileged id that owns a RUN's
  user namespace and no host file, inside a user namespace of its own mapping only that
  id (uid and gid 1000 inside, with a passwd entry so ssh can run), all capabilities
  dropped, under RUN's seccomp filter, in its own PID, IPC, UTS and cgroup namespaces;
* it sees the host's ``/usr`` (and the ``/bin``, ``/lib``... links into it) and ``/etc``
  read-only, fresh ``/dev``, ``/proc`` and ``/tmp``, and one writable directory: the
  checkout, bound at ``/checkout``. No home, no ``/root``, ``/home``, ``/srv`` or store:
  no host repository is there to be read by path;
* its environment, which may hold a proxy's password, reaches bubblewrap through a
  memory file, never a command line.

The checkout belongs to the jail's uid while git works in it: :func:`prepare` makes it
(mode 0700; its parent must be searchable by others, as distill's ``/tmp/distill-add*``
directories are made), :func:`reclaim` gives it back to distill's own uid and gid once
the jail is gone (the jail's PID namespace dies with it, so nothing of git's is left to
race the chown). Distill then reads it as it read any checkout before.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

from distill.confine import walk
from distill.errors import SandboxError
from distill.sandbox import _network, _seccomp, _userns
from distill.sandbox._fds import Fds
from distill.sandbox.run import HOST_FILES, bwrap_path, sandbox_ids

#: Where the checkout is inside the jail.
CHECKOUT = "/checkout"
#: The jail's uid and gid inside its user namespace (host uid: ``sandbox_ids().base``).
_INSIDE = 1000
_PASSWD = f"git:x:{_INSIDE}:{_INSIDE}:git:/nonexistent:/usr/sbin/nologin\n".encode()
_GROUP = f"git:x:{_INSIDE}:\n".encode()
#: Host directories the jail sees read-only (a symlink is recreated as a symlink).
_SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Variables naming certificate files the trusted user chose, bound read-only if they
#: lie outside /usr and /etc.
_CERT_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")
_NETWORKS = ("default", "host", "none")


def _jail_ids() -> int:
    return sandbox_ids().base


def prepare(checkout: Path) -> None:
    """Make ``checkout`` (missing or empty) the jail's own directory, mode 0700."""
    checkout.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(checkout, _jail_ids(), _jail_ids())
    os.chmod(checkout, 0o700)


def reclaim(checkout: Path) -> None:
    """Give ``checkout`` and everything in it back to distill (symlinks not followed)."""
    uid, gid = os.getuid(), os.getgid()
    os.chown(checkout, uid, gid)
    for parent, dirs, files in walk(checkout):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), uid, gid)


def _extra_files(env: dict[str, str]) -> list[str]:
    """Host files the jail needs outside /usr and /etc: where /etc/resolv.conf and
    /etc/hosts lead (systemd-resolved's are in /run), the user's certificate paths."""
    paths = [os.path.realpath(p) for p in HOST_FILES if os.path.exists(p)]
    paths += [env[name] for name in _CERT_VARS if env.get(name, "").startswith("/")]
    return sorted({p for p in paths if not p.startswith(("/usr/", "/etc/"))})


def _argv(argv: list[str], checkout: Path, network: str, env: dict[str, str],
          fd: dict[str, int]) -> list[str]:
    out = [bwrap_path(), "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
           "--uid", str(_INSIDE), "--gid", str(_INSIDE),
           "--userns-block-fd", str(fd["block"]), "--info-fd", str(fd["info"]),
           "--block-fd", str(fd["block"])]
    if network == "host":
        out.append("--share-net")
    for path in _SYSTEM:
        if os.path.islink(path):
            out += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            out += ["--ro-bind", path, path]
    out += ["--ro-bind-data", str(fd["passwd"]), "/etc/passwd",
            "--ro-bind-data", str(fd["group"]), "/etc/group"]
    for path in _extra_files(env):
        out += ["--ro-bind-try", path, path]
    out += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", str(checkout), CHECKOUT, "--chdir", CHECKOUT,
            "--seccomp", str(fd["seccomp"]), "--cap-drop", "ALL",
            "--clearenv", "--args", str(fd["env"]), "--", *argv]
    return out


def run(argv: list[str], checkout: Path, *, network: str,
        env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the jail, in ``checkout`` (made by :func:`prepare`), with only
    ``env`` set; return its exit status and output. ``network``: "default" (a private
    network, outbound through pasta), "none" (only a loopback) or "host".
    Raises SandboxError if the jail cannot be made."""
    if network not in _NETWORKS:
        raise SandboxError(f"unsupported network mode {network!r}")
    if network == "default":
        _network.check_available()
    host = _jail_ids()
    setenv = b"".join(b"--setenv\0%s\0%s\0" % (os.fsencode(k), os.fsencode(v))
                      for k, v in env.items())
    with Fds() as fds:
        info_r, info_w = fds.pipe()
        block_r, block_w = fds.pipe()  # bwrap's --userns-block-fd, then its --block-fd
        fd = {"info": info_w, "block": block_r, "passwd": fds.memfd(_PASSWD),
              "group": fds.memfd(_GROUP), "env": fds.memfd(setenv),
              "seccomp": fds.memfd(_seccomp.filter_bpf())}
        cmd = _argv(argv, checkout, network, env, fd)
        try:
            proc = _userns.start(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=list(fd.values()),
                                    cwd="/", env={}, user=host, group=host, extra_groups=[])
        except OSError as exc:
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            fds.close(*fd.values())  # only bwrap may hold them
        try:
            with ExitStack() as stack:
                if _userns.read_info(info_r) is not None:  # else bwrap says why on stderr
                    pid = _userns.child_of(proc.pid)
                    _userns.write_maps(pid, proc.pid, f"{_INSIDE} {host} 1\n".encode())
                    os.write(block_w, b"1")
                    if network == "default":
                        stack.enter_context(_network.attached(pid, host, host))
                    os.write(block_w, b"1")
                fds.close(block_w)
                out, err = proc.communicate()
        except SandboxError as exc:
            proc.kill()
            _, err = proc.communicate()
            raise SandboxError(_bwrap_failure(err) or exc.message) from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0 and (failure := _bwrap_failure(err)):
        raise SandboxError(f"cannot run git in its sandbox: {failure}",
                           hint="the sandbox's unprivileged user must be able to reach the "
                                "checkout: TMPDIR and its parents must be searchable by "
                                "others (o+x)" if "source path" in failure else None)
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def _bwrap_failure(stderr: bytes) -> str | None:
    """bubblewrap's own error, if it failed before the command ran."""
    lines = [ln for ln in stderr.decode(errors="replace").splitlines()
             if ln.startswith("bwrap:")]
    return lines[-1] if lines else None
