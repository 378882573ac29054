"""Build secrets (``--secret``) and forwarded SSH agents (``--ssh``), as buildx takes them.

* ``--secret id=X,src=PATH``: the file's content; ``id=X,env=VAR``: the variable's
  value; ``id=X`` alone: the variable X if it is set, else the file X (buildx's rule);
  ``type=file|env`` picks how ``src`` is read. Files are checked when the flag is
  parsed (they must exist and hold at most 500 KiB) and read only when a RUN needs
  them. Values live in memory: never in the store, a layer, the image config, the
  history or a cache key (use :meth:`SecretStore.ids` for that).
* ``--ssh ID[=SOCKET]``: an ssh-agent socket; ``default`` with no path is
  ``$SSH_AUTH_SOCK``. A RUN sees it through :class:`AgentRelay`, a socket of its own
  with the mount's owner and mode, relaying to the agent.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from distill import owned
from distill.dockerfile.mounts import csv_fields
from distill.errors import DistillError, UsageError
from distill.sandbox import rootless

MAX_SECRET_SIZE = 500 * 1024  # BuildKit's limit


@dataclass(frozen=True)
class SecretSource:
    """Where a secret's value comes from: a file or an environment variable."""

    id: str
    path: str | None = None
    env: str | None = None


def _parse_secret(spec: str) -> SecretSource:
    try:
        fields = csv_fields(spec, "secret")
    except DistillError as e:
        raise UsageError(f"--secret {spec!r}: {e.message}") from None
    ident, path, env, kind = "", "", "", ""
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq:
            raise UsageError(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            if value not in ("file", "env"):
                raise UsageError(f'unsupported secret type "{value}"')
            kind = value
        elif key == "id":
            ident = value
        elif key in ("source", "src"):
            path = value
        elif key == "env":
            env = value
        else:
            raise UsageError(f"unexpected key '{key}' in '{field}'")
    if kind == "env" and not env:
        env, path = path, ""
    if not ident:
        raise UsageError("secret missing ID", hint="use --secret id=NAME,src=FILE")
    return SecretSource(ident, path or None, env or None)


class SecretStore:
    """The build's secrets by id; values are read on first use and kept in memory only."""

    def __init__(self, sources: Iterable[SecretSource] = (),
                 environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._sources: dict[str, SecretSource] = {}
        self._values: dict[str, bytes] = {}
        self._lock = threading.Lock()
        for source in sources:
            if source.path is None and source.env is None:
                if source.id in self._environ:
                    source = SecretSource(source.id, env=source.id)
                else:
                    source = SecretSource(source.id, path=source.id)
            if source.path is not None:
                try:
                    size = os.stat(source.path).st_size
                except OSError as e:
                    raise UsageError(f"failed to stat {source.path}: {e.strerror}") from None
                if size > MAX_SECRET_SIZE:
                    raise UsageError(f"secret {source.id} too big. max size 500KB")
            self._sources[source.id] = source  # the last flag for an id wins, as in buildx

    @classmethod
    def parse(cls, specs: Iterable[str], environ: Mapping[str, str] | None = None) -> SecretStore:
        """The store for ``--secret`` flag values."""
        return cls([_parse_secret(spec) for spec in specs], environ)

    def ids(self) -> list[str]:
        """The ids of the secrets given (what a cache key may contain)."""
        return sorted(self._sources)

    def __contains__(self, ident: object) -> bool:
        return ident in self._sources

    def __repr__(self) -> str:
        return f"SecretStore(ids={self.ids()!r})"

    def get(self, ident: str) -> bytes | None:
        """The secret's value, or None when no ``--secret`` has this id."""
        source = self._sources.get(ident)
        if source is None:
            return None
        with self._lock:
            if ident not in self._values:
                self._values[ident] = self._read(source)
            return self._values[ident]

    def _read(self, source: SecretSource) -> bytes:
        if source.env is not None:
            return os.fsencode(self._environ.get(source.env, ""))
        assert source.path is not None
        try:
            with open(source.path, "rb") as f:
                data = f.read(MAX_SECRET_SIZE + 1)
        except OSError as e:
            raise UsageError(f"cannot read secret {source.id}: {e.strerror}") from None
        if len(data) > MAX_SECRET_SIZE:
            raise UsageError(f"secret {source.id} too big. max size 500KB")
        return data


# -- ssh ---------------------------------------------------------------------------------

def parse_ssh_specs(specs: Iterable[str], environ: Mapping[str, str] | None = None
                    ) -> dict[str, str]:
    """``--ssh ID[=SOCKET]`` flags -> {id: agent socket path}.

    An empty ID is ``default``; no path means ``$SSH_AUTH_SOCK``. Only agent sockets
    are supported (buildx also takes private key files; distill does not).
    """
    env = os.environ if environ is None else environ
    agents: dict[str, str] = {}
    for spec in specs:
        ident, eq, paths = spec.partition("=")
        ident = ident or "default"
        if ident in agents:
            raise UsageError(f'duplicate agent ID "{ident}"')
        path = paths if eq else ""
        if "," in path:
            raise UsageError(f"--ssh {spec}: only one agent socket per id is supported")
        path = path or env.get("SSH_AUTH_SOCK", "")
        if not path:
            raise UsageError("invalid empty ssh agent socket: SSH_AUTH_SOCK is not set",
                             hint="start an agent (eval $(ssh-agent)) or give --ssh ID=SOCKET")
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise UsageError(f"--ssh {ident}: {path}: {e.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise UsageError(f"--ssh {ident}: {path} is not an ssh-agent socket",
                             hint="distill forwards agent sockets only; ssh-add the key "
                                  "to an agent and pass its socket")
        agents[ident] = path
    return agents


class AgentRelay:
    """A private socket relaying each connection to an ssh agent, for the length of a RUN.

    The socket is ``uid:gid`` with ``mode`` (BuildKit: 0:0, 0600 unless the mount
    says otherwise) in a fresh 0700 directory; bind-mount :attr:`path` into the rootfs.
    """

    def __init__(self, upstream: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600) -> None:
        self.upstream = upstream
        self._dir = owned_private_dir("distill-ssh-")
        self.path = self._dir / "agent.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(self.path))
            rootless.chown(self.path, uid, gid, "the ssh agent's socket")
            os.chmod(self.path, mode & 0o777)
            self._listener.listen(16)
            self._listener.settimeout(0.1)
        except BaseException:
            self.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ssh-relay", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                agent.connect(self.upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=_bridge, args=(client, agent), daemon=True).start()

    def close(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._thread.join()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _bridge(client: socket.socket, agent: socket.socket) -> None:
    """Relay both ways until both sides are done, then close both."""
    back = threading.Thread(target=_pump, args=(agent, client), daemon=True)
    back.start()
    _pump(client, agent)
    back.join()
    client.close()
    agent.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF, then pass the EOF on."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        src.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def owned_private_dir(prefix: str) -> Path:
    """A fresh 0700 directory in :func:`private_tmp`, named for this process (what killed
    builds left there is removed first)."""
    sweep_stale_secrets()
    return owned.make_dir(prefix, private_tmp())


@functools.cache
def sweep_stale_secrets() -> None:
    """Remove the secrets and agent sockets of builds that were killed (once a process)."""
    for prefix in ("distill-secret-", "distill-ssh-"):
        owned.sweep(prefix, private_tmp(),
                    lambda path: shutil.rmtree(path, ignore_errors=True))


def private_tmp() -> str:
    """Where secret files and agent sockets go for a RUN: memory-backed (/dev/shm) when
    possible, so a secret never touches a disk; else /run, else the temp directory."""
    for candidate in ("/dev/shm", "/run"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return tempfile.gettempdir()
