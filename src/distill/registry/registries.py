"""The registry clients of one command, made when first asked for (the HTTP stack is
imported only by a command that talks to a registry)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from distill.registry.auth_config import Credentials, credentials_for
from distill.registry.hosts import RegistryHosts

if TYPE_CHECKING:
    from distill.registry.client import RegistryClient


class Registries:
    """The registry clients of one command: one per host, so tokens are reused."""

    def __init__(self, hosts: RegistryHosts | None = None,
                 credentials: Callable[[str], Credentials | None] = credentials_for) -> None:
        self.hosts = hosts if hosts is not None else RegistryHosts.load()
        self._credentials = credentials
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, host: str) -> RegistryClient:
        with self._lock:
            if host not in self._clients:
                from distill.registry.client import RegistryClient

                self._clients[host] = RegistryClient(self.hosts.get(host),
                                                     credentials=self._credentials)
            return self._clients[host]

    def endpoints(self, host: str) -> list[RegistryClient]:
        """Clients to try for ``host``'s images: its mirrors, then itself."""
        return [self.client(s.host) for s in self.hosts.endpoints(host)]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
