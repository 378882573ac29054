"""Registry credentials where Docker's CLI keeps them: ``config.json`` and credential helpers.

The semantics are docker/cli's (``cli/config``) and docker-credential-helpers':

* ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``); no file, no credentials.
* Docker Hub's key is ``https://index.docker.io/v1/``; other registries are keyed by host
  (``host:port``). ``auths`` keys are matched exactly first, then with scheme and path
  stripped (``https://ghcr.io/v2/`` is ``ghcr.io``), as docker/cli reads legacy keys.
* ``credHelpers[key]`` (even ``""``, which means "the file") wins over ``credsStore``; when
  a helper applies, ``auths`` holds no secrets for that key and is not consulted.
* A helper is ``docker-credential-<suffix> get|store|erase`` with the server URL or the
  JSON ``{ServerURL, Username, Secret}`` on stdin; ``Username`` ``<token>`` marks an
  identity token. Secrets travel only on stdin/stdout, never in argv or messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UsageError

DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30.0
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_TOKEN_USERNAME = "<token>"
_NOT_FOUND = "credentials not found in native keychain"
_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")


@dataclass(frozen=True, repr=False)
class Credentials:
    """A login: a username and password, or an identity (OAuth refresh) token."""

    username: str
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        hidden = [f", {name}=<hidden>" for name in ("password", "identity_token")
                  if getattr(self, name)]
        return f"Credentials(username={self.username!r}{''.join(hidden)})"


def config_dir() -> Path:
    """Docker's client configuration directory: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def credentials_for(registry: str, directory: Path | None = None) -> Credentials | None:
    """The credentials Docker would use for ``registry`` (a host such as ``ghcr.io``)."""
    server = _server(registry)
    config = _load(directory)
    helper = config.helper_for(server)
    if helper:
        return _helper_get(helper, server, config.path)
    keys = config.matching(server)
    return config.auths[keys[0]] if keys else None


def save_credentials(registry: str, creds: Credentials, directory: Path | None = None) -> Path:
    """Store ``creds`` as ``docker login`` does; returns the configuration file written."""
    if not creds.identity_token and (not creds.username or ":" in creds.username):
        raise UsageError(f"cannot store credentials for {registry}: the username must be "
                         "non-empty and must not contain ':'")
    server = _server(registry)
    config = _load(directory)
    entry: dict[str, str] = {}
    helper = config.helper_for(server)
    if helper:
        _helper_store(helper, server, creds, config.path)
    else:
        if creds.username or creds.password:
            userpass = f"{creds.username}:{creds.password}".encode()
            entry["auth"] = base64.b64encode(userpass).decode()
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
    auths = config.data.get("auths")
    if not isinstance(auths, dict):
        auths = config.data["auths"] = {}
    auths[server] = entry
    _write(config.path, config.data)
    return config.path


def remove_credentials(registry: str, directory: Path | None = None) -> bool:
    """Forget ``registry``'s credentials as ``docker logout`` does; False if there were none."""
    server = _server(registry)
    config = _load(directory)
    found = False
    helper = config.helper_for(server)
    if helper and _helper_get(helper, server, config.path) is not None:
        proc = _run_helper(helper, "erase", server.encode(), config.path)
        if proc.returncode and not _is_not_found(proc):
            raise _helper_failed(helper, "erase", proc)
        found = True
    keys = config.matching(server)
    if keys:
        found = found or any(config.auths[key] is not None for key in keys)
        for key in keys:
            del config.data["auths"][key]
        _write(config.path, config.data)
    return found


@dataclass(frozen=True)
class _Config:
    path: Path
    data: dict[str, Any]                 # the whole file, kept for rewriting
    auths: dict[str, Credentials | None]
    cred_helpers: dict[str, str]
    creds_store: str

    def helper_for(self, server: str) -> str:
        return self.cred_helpers.get(server, self.creds_store)

    def matching(self, server: str) -> list[str]:
        """``auths`` keys for ``server``, the exact key first (it is the one read)."""
        return sorted((key for key in self.auths if _server(key) == server),
                      key=lambda key: key != server)


def _hostname(key: str) -> str:
    """docker/cli's ConvertToHostname: ``https://host:5000/v1/`` -> ``host:5000``."""
    _, sep, rest = key.partition("://")
    if sep:
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2].removesuffix(":")
        if host.startswith("[") and host.endswith("]") and "]:" not in host:
            host = host[1:-1]
        if host:
            return host
    return key.split("/", 1)[0]


def _server(registry: str) -> str:
    """The key and helper server URL for a registry host or ``auths`` key."""
    host = _hostname(registry)
    return DOCKER_HUB_SERVER if host in _HUB_HOSTS else host


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"{path}: {what}",
                      hint="this is Docker's client configuration; fix it or log in again")


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _str(path: Path, where: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(path, f"{where} must be a string, not {_type_name(value)}")
    return value


def _obj(path: Path, where: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(path, f"{where} must be an object, not {_type_name(value)}")
    return value


def _load(directory: Path | None) -> _Config:
    path = (config_dir() if directory is None else directory) / "config.json"
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        text = ""
    except UnicodeDecodeError:
        raise _bad(path, "not UTF-8 text") from None
    except OSError as e:
        raise _bad(path, f"cannot read: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise _bad(path, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    data = _obj(path, "the top level", data)
    auths = {key: _entry(path, f"auths[{json.dumps(key)}]", value)
             for key, value in _obj(path, "auths", data.get("auths")).items()}
    helpers = {key: _str(path, f"credHelpers[{json.dumps(key)}]", value)
               for key, value in _obj(path, "credHelpers", data.get("credHelpers")).items()}
    return _Config(path, data, auths, helpers, _str(path, "credsStore", data.get("credsStore")))


def _entry(path: Path, where: str, value: object) -> Credentials | None:
    """One ``auths`` value, decoded as docker/cli does (``auth`` wins over the fields)."""
    entry = _obj(path, where, value)
    fields = {name: _str(path, f"{where}.{name}", entry.get(name)) for name in _FIELDS}
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        try:
            decoded = base64.b64decode(re.sub(r"[\r\n]", "", fields["auth"]), validate=True)
            username, sep, password = decoded.decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _bad(path, f"{where}.auth is not base64 of UTF-8 text") from None
        if not sep or not username:
            raise _bad(path, f'{where}.auth does not decode to "username:password"')
        password = password.strip("\x00")
    if not (username or password or fields["identitytoken"]):
        return None
    return Credentials(username, password, fields["identitytoken"])


def _write(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` (or the file its symlink names) atomically, mode 0600."""
    target = Path(os.path.realpath(path))
    tmp = None
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(json.dumps(data, indent="\t", ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def _run_helper(helper: str, action: str, stdin: bytes,
                config: Path) -> subprocess.CompletedProcess[bytes]:
    program = f"docker-credential-{helper}"
    where = f"(configured in {config})"
    try:
        return subprocess.run([program, action], input=stdin, capture_output=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise UsageError(f"credential helper {program} not found on PATH {where}",
                         hint=f"install {program}, or remove it from {config}") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"credential helper {program} did not answer {action!r} within "
                         f"{HELPER_TIMEOUT:g} s {where}") from None
    except OSError as e:
        raise UsageError(f"credential helper {program} cannot be run: {e.strerror}") from None


def _is_not_found(proc: subprocess.CompletedProcess[bytes]) -> bool:
    return _NOT_FOUND in (proc.stdout.decode(errors="replace").strip(),
                          proc.stderr.decode(errors="replace").strip())


def _first_line(output: bytes) -> str:
    for line in output.decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _helper_failed(helper: str, action: str, proc: subprocess.CompletedProcess[bytes],
                   secrets: tuple[str, ...] = ()) -> UsageError:
    # Helpers report errors on stdout (the protocol) or stderr; a reply that looks like
    # JSON may carry credentials and is never quoted.
    detail = _first_line(proc.stderr) or _first_line(proc.stdout)
    if detail.startswith("{"):
        detail = ""
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "<hidden>")
    message = (f"credential helper docker-credential-{helper} {action} failed "
               f"(exit status {proc.returncode})")
    return UsageError(f"{message}: {detail}" if detail else message)


def _helper_get(helper: str, server: str, config: Path) -> Credentials | None:
    proc = _run_helper(helper, "get", server.encode(), config)
    if proc.returncode:
        if _is_not_found(proc):
            return None
        raise _helper_failed(helper, "get", proc)
    try:
        reply = json.loads(proc.stdout)
        fields = {k.lower(): v for k, v in reply.items()}   # Go's JSON keys fold case
        username, secret = fields.get("username") or "", fields.get("secret") or ""
        if not isinstance(username, str) or not isinstance(secret, str):
            raise TypeError
    except (ValueError, AttributeError, TypeError):
        raise UsageError(f"credential helper docker-credential-{helper} answered 'get' "
                         "with something other than JSON {ServerURL, Username, Secret}") from None
    if username == _TOKEN_USERNAME:
        return Credentials("", identity_token=secret)
    return Credentials(username, secret) if username or secret else None


def _helper_store(helper: str, server: str, creds: Credentials, config: Path) -> None:
    username, secret = creds.username, creds.password
    if creds.identity_token:
        username, secret = _TOKEN_USERNAME, creds.identity_token
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    proc = _run_helper(helper, "store", payload.encode() + b"\n", config)
    if proc.returncode:
        raise _helper_failed(helper, "store", proc, (creds.password, creds.identity_token))
