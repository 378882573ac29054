"""``RUN --mount`` sources made ready for the sandbox, with BuildKit's semantics.

* bind: a path of the build context (as ``.dockerignore`` filters it) or of ``from=``
  (a stage or image root filesystem). Read-only unless ``rw``; with ``rw``, writes go
  to a throwaway copy (or to the stage's throwaway overlay) and vanish with the RUN.
* cache: a persistent directory ``STORE/cache-mounts/<sha256(id)>``, created on first
  use (``mode``/``uid``/``gid``, default 0755 0:0; or seeded from ``from=``/``source=``).
  ``sharing=shared`` lets RUNs use it at once; ``locked`` waits for exclusive use;
  ``private`` takes another instance (``<hash>-N``) when the first is in use. Locks are
  flock(2) on ``<instance>.lock``, held for the RUN.
* tmpfs: a fresh tmpfs (``size``).
* secret: the value in a file of a private directory on /dev/shm (mode 0400 and owner
  0:0 unless the mount says otherwise), bind-mounted read-only at the target; and/or in
  the variable ``env=`` (through ``RunSpec.secret_env``, never on a command line).
* ssh: a relay socket to the ``--ssh`` agent at the target (default
  ``/run/buildkit/ssh_agent.N``); ``SSH_AUTH_SOCK`` names the first one unless set.

A missing optional secret or agent mounts nothing (an ``env=`` secret is then "");
``required=true`` makes it an error. Nothing here writes a secret into the store.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from distill.builder.contenthash import ContentHashes
from distill.builder.context import BuildContext
from distill.builder.secrets import AgentRelay, SecretStore, owned_private_dir
from distill.confine import open_dir_in_root, resolve_in_root, walk
from distill.dockerfile.mounts import MOUNT_TYPES, Mount, ssh_target
from distill.errors import ContextError, DockerfileError
from distill.gopath import clean
from distill.ignore import walk_context
from distill.sandbox import rootless
from distill.sandbox.run import SandboxMount
from distill.store.blobs import remove_tree
from distill.store.store import Store

StageRootfs = Callable[[str, bool], AbstractContextManager[Path]]


class RunMounts(list[SandboxMount]):
    """The sandbox mounts of one RUN, plus the variables its mounts bring.

    ``env_defaults`` (SSH_AUTH_SOCK) apply only where the RUN's environment has no
    such variable: use :meth:`environ`. ``secret_env`` goes to ``RunSpec.secret_env``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.env_defaults: dict[str, str] = {}
        self.secret_env: dict[str, str] = {}

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        return {**self.env_defaults, **env}


@dataclass
class _Preparing:
    """What the mounts of one RUN are prepared with, and what they have made so far."""

    out: RunMounts
    stack: ExitStack
    store: Store
    context: BuildContext
    stage_rootfs: StageRootfs
    secrets: SecretStore
    ssh: Mapping[str, str]
    workdir: str
    held: dict[str, Path] = field(default_factory=dict)  # cache instances this RUN holds
    ssh_index: int = 0


@contextmanager
def prepare_mounts(mounts: Sequence[Mount], *, store: Store, context: BuildContext,
                   stage_rootfs: StageRootfs, secrets: SecretStore, ssh: Mapping[str, str],
                   workdir: str = "/") -> Iterator[RunMounts]:
    """Make ``mounts`` ready for one RUN; everything is released when the block ends.

    ``stage_rootfs(name, sandbox)`` yields the root filesystem of the stage or image
    ``from=`` names, as a writable view whose changes are discarded
    (``RootfsManager.mounted``); with ``sandbox`` the view a RUN sees (idmapped).
    ``ssh`` maps ``--ssh`` ids to agent sockets; ``workdir`` anchors relative targets.
    Each type is prepared by its entry of :data:`MOUNT_KINDS`.
    """
    with ExitStack() as stack:
        p = _Preparing(RunMounts(), stack, store, context, stage_rootfs, secrets, ssh,
                       workdir)
        for m in mounts:
            MOUNT_KINDS[m.type](m, p)
        yield p.out


def _mount_bind(m: Mount, p: _Preparing) -> None:
    p.out.append(_bind(m, m.resolved_target(p.workdir), p.stack, p.store, p.context,
                       p.stage_rootfs))


def _bind(m: Mount, target: str, stack: ExitStack, store: Store, context: BuildContext,
          stage_rootfs: StageRootfs) -> SandboxMount:
    if m.from_ is not None:
        root = stack.enter_context(stage_rootfs(m.from_, True))
        host = resolve_in_root(root, m.source)
        if not os.path.lexists(host):
            raise ContextError(f"mount source {clean('/' + m.source)} not found in {m.from_}")
        return SandboxMount("bind", target, host, readonly=m.readonly, shifted=True)
    host = resolve_in_root(context.root, m.source)
    if not os.path.lexists(host) or not context.allows(host):
        raise ContextError(f"mount source {clean('/' + m.source)} not found in the build context")
    if context.matcher is None and m.readonly:
        return SandboxMount("bind", target, host, readonly=True)
    scratch = stack.enter_context(store.blobs.temp_dir("bind-"))
    os.chmod(scratch, 0o700)
    copy = scratch / "src"
    rel = os.path.relpath(host, context.root)
    start = "" if rel == "." else rel.replace(os.sep, "/")
    _clone(context.root, start, walk_context(context.root, context.matcher, start), copy,
           link=m.readonly)
    return SandboxMount("bind", target, copy, readonly=m.readonly)


def _walk_all(root: Path, start: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry at and below ``start`` (relative to ``root``), parents first; like
    :func:`walk_context`, ``start`` itself is listed unless it is the root."""
    top = root / start if start else root
    if start:
        st = os.lstat(top)
        yield start, st
        if not stat.S_ISDIR(st.st_mode):
            return
    for dirpath, dirnames, filenames in walk(top):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            yield os.path.relpath(path, root).replace(os.sep, "/"), os.lstat(path)


def _clone(root: Path, start: str, entries: Iterator[tuple[str, os.stat_result]],
           dest: Path, *, link: bool = False) -> None:
    """Copy ``start`` (relative to ``root``) to ``dest``: modes, owners, times, links.

    ``entries`` lists what to copy, parents first. ``link`` hardlinks regular files
    where possible (for read-only mounts). Sockets and devices are left out.
    """
    if not start:  # the walk of a whole tree does not list its root
        st = os.lstat(root)
        os.mkdir(dest, 0o700)
        dirs: list[tuple[Path, os.stat_result]] = [(dest, st)]
    else:
        dirs = []
    for rel, st in entries:
        sub = rel[len(start):].lstrip("/") if start else rel
        path = dest / sub if sub else dest
        src = root / rel
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(path, 0o700)
            dirs.append((path, st))
            continue
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), path)
        elif stat.S_ISREG(mode):
            try:
                if not link:
                    raise OSError
                os.link(src, path, follow_symlinks=False)
                continue  # same inode: owner, mode and times are the source's
            except OSError:
                shutil.copyfile(src, path, follow_symlinks=False)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(path)
        else:
            continue
        _attrs(path, st)
    if not dirs:
        if not os.path.lexists(dest):
            raise ContextError(f"mount source /{start} not found in the build context")
        return
    for path, st in reversed(dirs):
        _attrs(path, st)


def _attrs(path: Path, st: os.stat_result) -> None:
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


# -- cache --------------------------------------------------------------------------------

def cache_key(m: Mount) -> str:
    """The name of a cache's directory: sha256 of its id (and of its base, if it has one)."""
    material = m.id
    if m.from_ is not None or _custom_root(m):
        base: list[object] = [m.from_, clean("/" + m.source)]
        if _custom_root(m):
            base += [m.mode, m.uid, m.gid]
        material = json.dumps([m.id, base])
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()


def _custom_root(m: Mount) -> bool:
    """mode/uid/gid shape a fresh directory only when the whole base is mounted."""
    return clean("/" + m.source) == "/" and (m.mode, m.uid, m.gid) != (None, None, None)


def _mount_cache(m: Mount, p: _Preparing) -> None:
    directory, subdir = _cache(m, p.stack, p.store, p.stage_rootfs, p.held)
    p.out.append(SandboxMount("bind", m.resolved_target(p.workdir), directory,
                              readonly=m.readonly, shared=True, source_path=subdir))


def _cache(m: Mount, stack: ExitStack, store: Store, stage_rootfs: StageRootfs,
           held: dict[str, Path]) -> tuple[Path, str | None]:
    """The cache instance's directory and the ``source=`` inside it (None: all of it).

    The cache is shared with other builds, which may change it at will: the sandbox
    opens ``source`` inside it by descriptor, never by a path resolved here."""
    key = cache_key(m)
    if key not in held:
        base = store.root / "cache-mounts"
        base.mkdir(exist_ok=True)
        held[key] = _take_instance(base, key, m.sharing, stack,
                                   lambda tmp: _init_cache(m, tmp, stage_rootfs))
    directory = held[key]
    source = clean("/" + m.source)
    if source == "/" or _custom_root(m):
        return directory, None
    fd = open_dir_in_root(directory, source)
    if fd is None:
        raise DockerfileError(f"cache mount source {source} does not exist in the cache")
    os.close(fd)  # a friendly early error; the sandbox opens it again, by descriptor
    return directory, source


def _take_instance(base: Path, key: str, sharing: str, stack: ExitStack,
                   init: Callable[[Path], None]) -> Path:
    """Lock an instance of the cache and make sure it exists; the lock lasts the RUN."""
    for n in itertools.count():
        name = key if n == 0 else f"{key}-{n}"
        fd = os.open(base / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if sharing == "locked":
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                op = fcntl.LOCK_SH if sharing == "shared" else fcntl.LOCK_EX
                fcntl.flock(fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        stack.callback(os.close, fd)
        return _ensure_dir(base, name, init)
    raise AssertionError("unreachable")


def _ensure_dir(base: Path, name: str, init: Callable[[Path], None]) -> Path:
    final = base / name
    if final.is_dir():
        return final
    fd = os.open(base / ".create.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not final.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=".new-"))
            try:
                init(tmp)
                os.rename(tmp, final)
            except BaseException:
                remove_tree(tmp)
                raise
    finally:
        os.close(fd)
    return final


def _init_cache(m: Mount, tmp: Path, stage_rootfs: StageRootfs) -> None:
    source = clean("/" + m.source)
    if m.from_ is None or _custom_root(m):
        os.chmod(tmp, 0o755 if m.mode is None else m.mode)
        rootless.chown(tmp, m.uid or 0, m.gid or 0, f"the cache mount at {m.target}")
        return
    with stage_rootfs(m.from_, False) as root:
        host = resolve_in_root(root, source)
        if not os.path.isdir(host):
            raise DockerfileError(f"cache mount source {source} not found in {m.from_}")
        rel = os.path.relpath(host, root).replace(os.sep, "/")
        start = "" if rel == "." else rel
        seed = tmp / "seed"
        _clone(root, start, _walk_all(root, start), seed)
    os.chmod(tmp, 0o755)
    parent = tmp
    parts = [p for p in source.split("/") if p]
    for part in parts[:-1]:
        parent = parent / part
        os.mkdir(parent, 0o755)
    if parts:
        os.rename(seed, parent / parts[-1])
    else:
        for entry in os.listdir(seed):
            os.rename(seed / entry, tmp / entry)
        st = os.lstat(seed)
        os.rmdir(seed)
        _attrs(tmp, st)


# -- secret -------------------------------------------------------------------------------

def _mount_secret(m: Mount, p: _Preparing) -> None:
    _secret(m, m.resolved_target(p.workdir), p.stack, p.secrets, p.out)


def _secret(m: Mount, target: str, stack: ExitStack, secrets: SecretStore,
            out: RunMounts) -> None:
    value = secrets.get(m.id)
    env_name = None if m.env is None else (m.env or m.id)
    if value is None:
        if m.required:
            raise DockerfileError(f"secret {m.id}: not found",
                                  hint=f"pass it with --secret id={m.id},src=FILE "
                                       f"(or id={m.id},env=VARIABLE)")
        if env_name is not None:
            out.secret_env[env_name] = ""
        return
    if env_name is not None:
        out.secret_env[env_name] = os.fsdecode(value)
    if not m.target:  # env= without a target: the variable only
        return
    directory = owned_private_dir("distill-secret-")
    stack.callback(shutil.rmtree, directory, True)
    path = directory / "secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    rootless.chown(path, m.uid or 0, m.gid or 0, f"the secret mounted at {target}")
    os.chmod(path, (0o400 if m.mode is None else m.mode) & 0o7777)
    out.append(SandboxMount("bind", target, path, readonly=True))


# -- tmpfs and ssh --------------------------------------------------------------------------

def _mount_tmpfs(m: Mount, p: _Preparing) -> None:
    p.out.append(SandboxMount("tmpfs", m.resolved_target(p.workdir), size=m.size,
                              readonly=m.readonly))


def _mount_ssh(m: Mount, p: _Preparing) -> None:
    m = replace(m, target=ssh_target(m, p.ssh_index))
    target = m.resolved_target(p.workdir)
    if p.ssh_index == 0:  # BuildKit: the first ssh mount, even if it is skipped
        p.out.env_defaults["SSH_AUTH_SOCK"] = target
    p.ssh_index += 1
    agent = p.ssh.get(m.id)
    if agent is None:
        if m.required:
            raise DockerfileError(f'no SSH key "{m.id}" forwarded from the client',
                                  hint=f"pass --ssh {m.id}=SOCKET (or --ssh default for "
                                       "$SSH_AUTH_SOCK)")
        return
    relay = p.stack.enter_context(AgentRelay(agent, uid=m.uid or 0, gid=m.gid or 0,
                                             mode=0o600 if m.mode is None else m.mode))
    p.out.append(SandboxMount("bind", target, relay.path))


#: How each ``--mount`` type (``dockerfile.mounts.MOUNT_TYPES``) is made ready for a RUN:
#: it appends what the sandbox mounts (a bind or a tmpfs, ``sandbox/_mounts.py``) and
#: any variables to the RUN's :class:`RunMounts`, and registers its cleanup.
MOUNT_KINDS: dict[str, Callable[[Mount, _Preparing], None]] = {
    "bind": _mount_bind, "cache": _mount_cache, "tmpfs": _mount_tmpfs,
    "secret": _mount_secret, "ssh": _mount_ssh,
}


# -- cache keys ---------------------------------------------------------------------------

def mounts_record(mounts: Sequence[Mount], workdir: str = "/") -> list[object]:
    """A RUN's mounts as its cache record holds them: every option (a secret's id,
    never its value), with the mount point resolved against the working directory."""
    out: list[object] = []
    for m in mounts:
        target = m.resolved_target(workdir) if m.target or MOUNT_TYPES[m.type].mount_point \
            else m.target      # "" is the workdir for mount points
        out.append({**{f.name: getattr(m, f.name) for f in fields(m)}, "target": target})
    return out


def mounts_inputs(mounts: Sequence[Mount], context: BuildContext,
                  hashes: ContentHashes) -> list[object]:
    """The content a RUN's context binds show (filtered by .dockerignore); a ``from=``
    image's layers and a cache mount's changing content are not keyed here."""
    return [[i, context_digest(context, m.source, hashes)] for i, m in enumerate(mounts)
            if m.type == "bind" and m.from_ is None]


def context_digest(context: BuildContext, source: str, hashes: ContentHashes) -> str:
    """The digest of a context path as a bind mount shows it: names, types, modes,
    owners and bytes of what .dockerignore leaves in; "missing" if there is none."""
    host = resolve_in_root(context.root, source)
    if not os.path.lexists(host) or not context.allows(host):
        return "missing"
    rel = os.path.relpath(host, context.root)
    start = "" if rel == "." else rel.replace(os.sep, "/")
    return hashes.walk_digest((path[len(start):], str(context.root / path), st)
                              for path, st in walk_context(context.root, context.matcher,
                                                           start))


__all__ = ["RunMounts", "cache_key", "context_digest", "mounts_inputs", "mounts_record",
           "prepare_mounts"]
