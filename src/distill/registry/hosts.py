"""How to reach each registry: scheme, TLS trust and mirrors.

The settings file is spelled as BuildKit's ``buildkitd.toml`` spells its registry
section, so a team can copy theirs::

    [registry."docker.io"]
    mirrors = ["mirror.example.com:5000"]

    [registry."mirror.example.com:5000"]
    http = false                 # plain HTTP (default: false, except on loopback)
    insecure = false             # HTTPS without verifying the certificate
    ca = ["/etc/ssl/team-ca.pem"]

It is read from ``$DISTILL_REGISTRIES`` or ``~/.config/distill/registries.toml``.
Loopback registries (localhost, 127.0.0.0/8, ::1) may speak plain HTTP, as Docker
treats 127.0.0.0/8 as insecure; every other registry is HTTPS, verified against the
system's CAs and those named here, unless the file says otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from distill.errors import UsageError


@dataclass(frozen=True)
class HostSettings:
    host: str                          # "registry.example.com:5000"
    http: bool = False                 # plain HTTP by the user's choice
    insecure: bool = False             # HTTPS, certificate not verified
    ca: tuple[Path, ...] = ()
    mirrors: tuple[str, ...] = ()

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost[:port]``, ``127.x.y.z[:port]``, ``[::1][:port]``."""
    name = host
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def config_path() -> Path:
    env = os.environ.get("DISTILL_REGISTRIES")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "distill" / "registries.toml"


class RegistryHosts:
    """The settings of every registry, from the settings file (absent = defaults)."""

    def __init__(self, settings: dict[str, HostSettings] | None = None) -> None:
        self._settings = settings or {}

    @classmethod
    def load(cls, path: Path | None = None) -> RegistryHosts:
        explicit = path is not None or "DISTILL_REGISTRIES" in os.environ
        path = path or config_path()
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            if explicit:
                raise UsageError(f"registry settings file {path} does not exist") from None
            return cls()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise UsageError(f"cannot read registry settings {path}: {e}") from None
        return cls(_parse(data, path))

    def get(self, host: str) -> HostSettings:
        return self._settings.get(host) or HostSettings(host)

    def endpoints(self, host: str) -> list[HostSettings]:
        """Where to look for ``host``'s images, in order: its mirrors, then itself."""
        mirrors = [self.get(m) for m in self.get(host).mirrors]
        return [*mirrors, self.get(host)]


def _parse(data: dict[str, object], path: Path) -> dict[str, HostSettings]:
    registries = data.get("registry", {})
    if not isinstance(registries, dict):
        raise UsageError(f"{path}: 'registry' must be a table of registries")
    out = {}
    for host, table in registries.items():
        what = f"{path}: [registry.{host!r}]"
        if not isinstance(table, dict):
            raise UsageError(f"{what} must be a table")
        unknown = set(table) - {"http", "insecure", "ca", "mirrors"}
        if unknown:
            raise UsageError(f"{what}: unknown keys {', '.join(sorted(unknown))}",
                             hint="known: http, insecure, ca, mirrors")
        for key in ("http", "insecure"):
            if not isinstance(table.get(key, False), bool):
                raise UsageError(f"{what}: {key} must be true or false")
        for key in ("ca", "mirrors"):
            value = table.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{what}: {key} must be a list of strings")
        mirrors = tuple(_mirror_host(m, what) for m in table.get("mirrors", []))
        out[host] = HostSettings(host, table.get("http", False), table.get("insecure", False),
                                 tuple(Path(c).expanduser() for c in table.get("ca", [])),
                                 mirrors)
    return out


def _mirror_host(value: str, what: str) -> str:
    """A mirror may be written as a host or a URL (``https://mirror.gcr.io``)."""
    for scheme in ("https://", "http://"):
        value = value.removeprefix(scheme)
    value = value.rstrip("/")
    if not value or "/" in value:
        raise UsageError(f"{what}: mirror {value!r} must be a registry host[:port]",
                         hint="mirrors with a path are not supported")
    return value
