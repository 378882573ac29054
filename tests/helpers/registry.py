"""Real registries on 127.0.0.1 for integration tests (no mocks).

* ``RegistryServer``: the distribution registry (``docker-registry serve``, Debian package
  ``docker-registry``) on a free port with its storage in a directory, in three modes:
  anonymous plain HTTP, htpasswd basic auth over TLS (a CA made here with the openssl CLI),
  bearer tokens from a ``TokenServer``. Pushes and pulls go through skopeo.
* ``TokenServer``: the Docker token flow (``GET realm?service=...&scope=...``, optional basic
  auth; also the OAuth2 ``POST`` form), JWTs signed RS256 with the openssl CLI and carrying
  the signing certificate in ``x5c``. Grants what is asked with the right credentials,
  ``pull`` only anonymously, refuses wrong credentials, and records every request.
* ``FaultProxy``: a plain-HTTP reverse proxy in front of a registry that forwards faithfully
  and can be told to fail the next N matching requests (reset mid-body, a status, a flipped
  byte), recording what it saw.
* ``write_image_layout`` (a tiny image as an OCI layout) and ``push_two_platform_index`` (an
  amd64 + arm64 index or Docker manifest list made from one image).

What the installed registry (distribution 2.8) does that a client may not expect:

* A manifest pushed as OCI is answered 404 MANIFEST_UNKNOWN ("OCI manifest found, but
  accept header does not support OCI manifests") unless the GET's Accept names the OCI
  type: ``Accept: */*`` is not enough. ``MANIFEST_ACCEPT`` lists every type.
* Token auth: the JWT header must carry ``x5c`` (a chain verified against
  ``rootcertbundle``, the leaf usable for serverAuth or with no EKU), a ``jwk``, or a
  ``kid`` that is the *libtrust* fingerprint of a key in the bundle (not a free label).
  ``aud`` is one string equal to ``service``; ``exp`` and ``nbf`` are required (60 s leeway).
  A token lacking an action gets 401 with ``error="insufficient_scope"`` in the challenge.
* Absolute ``Location`` headers are built from the request's ``Host``.
"""

from __future__ import annotations

import base64
import email.message
import fcntl
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self

import httpx

REGISTRY_BIN = "docker-registry"
SKOPEO = "skopeo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
# Every Accept a client may send for a manifest, for raw fetches over HTTP.
MANIFEST_ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"

Direction = Literal["src", "dest", ""]


def _run(argv: Sequence[str], *, input_bytes: bytes | None = None) -> bytes:
    proc = subprocess.run(list(argv), input=input_bytes, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unique_repo(prefix: str = "test") -> str:
    """A repository name no other test uses (for the session-scoped registries)."""
    return f"{prefix}-{secrets.token_hex(4)}"


# --- TLS material and htpasswd ------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate it signed (SAN IP:127.0.0.1, DNS:localhost).

    ``cert_dir`` holds only ``ca.crt``: the layout skopeo's ``--*-cert-dir`` reads."""
    ca_path: Path
    cert_path: Path
    key_path: Path
    cert_dir: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_tls(directory: Path) -> TlsFiles:
    """A fresh CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca-cert" / "ca.crt"
    ca_crt.parent.mkdir(exist_ok=True)
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256"]
    _run(["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=distill test CA",
          "-keyout", str(ca_key), "-out", str(ca_crt)])
    _run(["openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr)])
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(crt)])
    return TlsFiles(ca_path=ca_crt, cert_path=crt, key_path=key, cert_dir=ca_crt.parent)


def make_htpasswd(path: Path, username: str, password: str) -> Path:
    """An htpasswd file with one bcrypt entry (the only hash distribution accepts)."""
    path.write_bytes(_run(["htpasswd", "-Bbn", username, password]))
    return path


# --- token server -------------------------------------------------------------------------


class TokenRequest(NamedTuple):
    """One request to the token server: the scopes asked (space-joined, "" for none) and
    whether it carried valid credentials. Compares equal to a plain (scope, bool) tuple."""
    scope: str
    authenticated: bool


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _TokenHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any],
               extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _basic_user(self) -> tuple[bool, str | None]:
        """(credentials present, the username if they were right)."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return True, None
        return True, self.server.owner.check(user, password)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        present, user = self._basic_user()
        self._answer(query.get("service", [""])[0], query.get("scope", []), present, user,
                     oauth=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        present, user = self._basic_user()
        if form.get("grant_type", [""])[0] == "password":
            present = True
            user = self.server.owner.check(form.get("username", [""])[0],
                                           form.get("password", [""])[0])
        scopes = " ".join(form.get("scope", [])).split()
        self._answer(form.get("service", [""])[0], scopes, present, user, oauth=True)

    def _answer(self, service: str, scopes: list[str], present: bool, user: str | None,
                *, oauth: bool) -> None:
        owner = self.server.owner
        owner.record(TokenRequest(" ".join(scopes), user is not None))
        if present and user is None:
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                          "message": "wrong username or password"}]},
                        {"WWW-Authenticate": 'Basic realm="distill test token server"'})
            return
        if service != owner.service:
            self._reply(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
            return
        token = owner.issue(scopes, user)
        body: dict[str, Any] = {"token": token, "access_token": token,
                                "expires_in": owner.ttl,
                                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if oauth:
            body["scope"] = " ".join(scopes)
        self._reply(200, body)


class _InThread:
    """An http.server on a free port of 127.0.0.1, served by a thread of its own until
    ``stop``; its handlers reach ``owner`` as ``self.server.owner``."""

    def __init__(self, server_class: type[Any], handler: type[Any], owner: object) -> None:
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.owner = owner
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _TokenHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: TokenServer


class TokenServer:
    """The Docker token flow for a registry with ``auth: token``.

    ``url`` is the realm. Tokens are JWTs signed RS256 by ``openssl dgst``, with the signing
    certificate (self-signed, also the registry's ``rootcertbundle``) in the ``x5c`` header.
    With the right basic credentials every action asked for is granted; anonymously only
    ``pull`` on repositories; with wrong credentials 401. ``token_requests`` lists every
    request as ``TokenRequest(scope, authenticated)``."""

    def __init__(self, directory: Path, *, username: str = "tokenuser",
                 password: str | None = None, service: str = "distill-test-registry",
                 issuer: str = "distill-test-token-server", ttl: int = 300) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.service, self.issuer, self.ttl = service, issuer, ttl
        self.key_path = directory / "token-signer.key"
        self.rootcertbundle = directory / "token-signer.crt"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
              "-days", "2", "-subj", "/CN=distill test token signer",
              "-keyout", str(self.key_path), "-out", str(self.rootcertbundle)])
        der = _run(["openssl", "x509", "-in", str(self.rootcertbundle), "-outform", "DER"])
        self._x5c = base64.b64encode(der).decode()   # standard base64, as RFC 7515 says
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._served: _InThread | None = None

    @property
    def url(self) -> str:
        assert self._served is not None, "token server not started"
        return f"http://127.0.0.1:{self._served.port}/token"

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def check(self, username: str, password: str) -> str | None:
        ok = (secrets.compare_digest(username.encode(), self.username.encode())
              and secrets.compare_digest(password.encode(), self.password.encode()))
        return username if ok else None

    def grant(self, scopes: Sequence[str], user: str | None) -> list[dict[str, Any]]:
        """The ``access`` claim for ``scopes`` (``type:name:a,b``; names may hold colons)."""
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = [a for a in wanted if a == "pull"] if kind == "repository" else []
            if name and wanted:
                access.append({"type": kind, "name": name, "actions": wanted})
        return access

    def issue(self, scopes: Sequence[str], user: str | None) -> str:
        """A signed token for ``scopes`` as the server would grant them to ``user``."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + self.ttl, "nbf": now - 5, "iat": now,
                  "jti": secrets.token_hex(8), "access": self.grant(scopes, user)}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        signature = _run(["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
                         input_bytes=signing_input.encode())
        return signing_input + "." + _b64url(signature)

    def start(self) -> None:
        self._served = _InThread(_TokenHTTPServer, _TokenHandler, self)

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None


# --- the registry -------------------------------------------------------------------------


class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1, storage under ``directory/storage``.

    Pass ``tls`` for HTTPS, ``basic=(user, password)`` for htpasswd auth, ``token`` for
    bearer-token auth (the token server is started and stopped with the registry).
    ``start()`` returns once ``/v2/`` answers."""

    def __init__(self, directory: Path, *, tls: TlsFiles | None = None,
                 basic: tuple[str, str] | None = None, token: TokenServer | None = None) -> None:
        assert not (basic and token), "one auth mode at a time"
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.storage = directory / "storage"
        self.tls, self.token = tls, token
        self.username: str | None = basic[0] if basic else token.username if token else None
        self.password: str | None = basic[1] if basic else token.password if token else None
        self._htpasswd = (make_htpasswd(directory / "htpasswd", *basic) if basic else None)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "registry.log"

    # addresses
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def ca_path(self) -> Path | None:
        return self.tls.ca_path if self.tls else None

    @property
    def cert_dir(self) -> Path | None:
        return self.tls.cert_dir if self.tls else None

    @property
    def auth(self) -> str | None:
        return "basic" if self._htpasswd else "token" if self.token else None

    def ref(self, repo_tag: str) -> str:
        """``host/repo:tag`` (or ``host/repo@digest``) in this registry."""
        return f"{self.host}/{repo_tag}"

    # lifecycle
    def _config(self) -> dict[str, Any]:
        http_cfg: dict[str, Any] = {"addr": self.host, "secret": secrets.token_hex(16),
                                    "headers": {"X-Content-Type-Options": ["nosniff"]}}
        if self.tls:
            http_cfg["tls"] = {"certificate": str(self.tls.cert_path),
                               "key": str(self.tls.key_path)}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http_cfg,
        }
        if self._htpasswd:
            config["auth"] = {"htpasswd": {"realm": "distill-test", "path": str(self._htpasswd)}}
        if self.token:
            config["auth"] = {"token": {"realm": self.token.url, "service": self.token.service,
                                        "issuer": self.token.issuer,
                                        "rootcertbundle": str(self.token.rootcertbundle)}}
        return config

    def start(self, timeout: float = 15.0) -> Self:
        if shutil.which(REGISTRY_BIN) is None:
            raise RuntimeError(f"{REGISTRY_BIN} is not installed (Debian package docker-registry)")
        if self.token:
            self.token.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        for _attempt in range(3):
            self.port = _free_port()
            config = self.directory / "config.yml"   # JSON is YAML
            config.write_text(json.dumps(self._config(), indent=2))
            with open(self.log_path, "ab") as log:
                # setpriv (util-linux): SIGTERM to the registry when the thread that
                # started it dies, so a killed test session leaves no registry behind.
                self._proc = subprocess.Popen(
                    ["setpriv", "--pdeathsig", "TERM", REGISTRY_BIN, "serve", str(config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
            if self._wait_ready(timeout):
                return self
            self._terminate()
            if "address already in use" not in self.log_path.read_text(errors="replace"):
                break
        self.stop()
        raise RuntimeError(f"registry did not start:\n{self.log_path.read_text()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        verify: ssl.SSLContext | bool = self.tls.ssl_context() if self.tls else False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                status = httpx.get(f"{self.url}/v2/", verify=verify, timeout=1).status_code
                if status in (200, 401):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        return False

    def _terminate(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        self._terminate()
        if self.token:
            self.token.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # clients
    def skopeo_args(self, direction: Direction = "dest", *,
                    creds: bool | tuple[str, str] = True) -> list[str]:
        """skopeo flags to reach this registry. ``direction`` is "src", "dest" or "" (for
        ``inspect``). ``creds``: True for the fixture's credentials (anonymous when it has
        none), False for anonymous, or an explicit (user, password)."""
        p = f"--{direction}-" if direction else "--"
        args = ([f"{p}tls-verify=true", f"{p}cert-dir={self.tls.cert_dir}"] if self.tls
                else [f"{p}tls-verify=false"])
        pair = ((self.username, self.password) if creds is True else creds or None)
        if pair and pair[0] is not None:
            args.append(f"{p}creds={pair[0]}:{pair[1]}")
        else:
            args.append(f"{p}no-creds")
        return args

    def push_layout(self, layout_dir: Path, ref_in_layout: str, repo_tag: str, *,
                    all_images: bool = False, format: str | None = None,
                    creds: bool | tuple[str, str] = True) -> str:
        """``skopeo copy oci:DIR:REF docker://HOST/REPO:TAG``; returns ``HOST/REPO:TAG``.
        ``ref_in_layout`` as ``layout_ref`` finds it (so "busybox:latest" in the store)."""
        extra = (["--all"] if all_images else []) + ([f"--format={format}"] if format else [])
        skopeo("copy", *extra, *self.skopeo_args("dest", creds=creds),
               f"oci:{layout_dir}:{layout_ref(layout_dir, ref_in_layout)}", f"docker://{self.ref(repo_tag)}")
        return self.ref(repo_tag)

    def pull_to_layout(self, repo_tag: str, dest_dir: Path, ref_in_layout: str = "latest", *,
                       all_images: bool = False,
                       creds: bool | tuple[str, str] = True) -> Path:
        """``skopeo copy docker://HOST/REPO:TAG oci:DEST:REF``; returns ``dest_dir``."""
        extra = ["--all"] if all_images else []
        skopeo("copy", *extra, *self.skopeo_args("src", creds=creds),
               f"docker://{self.ref(repo_tag)}", f"oci:{dest_dir}:{ref_in_layout}")
        return dest_dir

    def inspect(self, repo_tag: str, *extra: str,
                creds: bool | tuple[str, str] = True) -> dict[str, Any]:
        """``skopeo inspect`` (pass ``"--raw"`` for the manifest as stored) as JSON."""
        out = skopeo("inspect", *extra, *self.skopeo_args("", creds=creds),
                     f"docker://{self.ref(repo_tag)}")
        return dict(json.loads(out))

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client on ``url`` trusting the CA, with basic auth if the registry
        uses it (token registries: fetch a token from ``token.url`` yourself)."""
        kwargs.setdefault("verify", self.tls.ssl_context() if self.tls else True)
        if self._htpasswd and self.username and self.password:
            kwargs.setdefault("auth", (self.username, self.password))
        return httpx.Client(base_url=self.url, **kwargs)

    def _read_headers(self, repo: str) -> dict[str, str]:
        if not self.token:
            return {}
        token = self.token.issue([f"repository:{repo}:pull"], self.username)
        return {"Authorization": f"Bearer {token}"}

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """A manifest's bytes as stored and its media type (any kind accepted), over HTTP
        (on a token registry with a token minted directly, not requested)."""
        with self.client() as client:
            response = client.get(f"/v2/{repo}/manifests/{reference}",
                                  headers={"Accept": MANIFEST_ACCEPT, **self._read_headers(repo)})
        response.raise_for_status()
        return response.content, response.headers["Content-Type"]

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A blob's bytes, over HTTP (as ``get_manifest``)."""
        with self.client() as client:
            response = client.get(f"/v2/{repo}/blobs/{digest}", headers=self._read_headers(repo))
        response.raise_for_status()
        return response.content


def skopeo(*args: str) -> str:
    """Run ``skopeo --insecure-policy ARGS``; raise ``SkopeoError`` with stderr on failure."""
    proc = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SkopeoError(f"skopeo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}",
                          proc.stderr)
    return proc.stdout


class SkopeoError(RuntimeError):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def start_http_registry(directory: Path) -> RegistryServer:
    return RegistryServer(directory).start()


def start_tls_basic_registry(directory: Path, username: str = "distill",
                             password: str | None = None) -> RegistryServer:
    return RegistryServer(directory, tls=make_tls(directory / "tls"),
                          basic=(username, password or secrets.token_urlsafe(12))).start()


def start_token_registry(directory: Path) -> RegistryServer:
    return RegistryServer(directory, token=TokenServer(directory / "token")).start()


# --- the fault proxy ----------------------------------------------------------------------

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-connection",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                         "expect"})
_REASONS = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


@dataclass
class _Fault:
    kind: Literal["reset", "status", "corrupt"]
    method: str | None
    path: re.Pattern[str]
    remaining: int
    nbytes: int = 0
    code: int = 0
    retry_after: int | None = None
    offset: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and self.path.search(path) is not None)


@dataclass(frozen=True)
class ProxiedRequest:
    """What the proxy saw and did: the status it sent and the fault it applied (if any).
    ``headers`` are the request's, as received (case-insensitive, ``get_all`` for repeats)."""
    method: str
    path: str
    range: str | None
    status: int
    fault: str | None
    headers: email.message.Message = field(default_factory=email.message.Message,
                                           compare=False)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _ProxyHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _body(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass   # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk

    def _record(self, status: int, fault: _Fault | None) -> None:
        self.server.owner.record(ProxiedRequest(
            self.command, self.path, self.headers.get("Range"), status,
            fault.kind if fault else None, self.headers))

    def _proxy(self) -> None:
        owner = self.server.owner
        fault = owner.take_fault(self.command, self.path)
        has_body = ("Content-Length" in self.headers or "Transfer-Encoding" in self.headers)
        if fault is not None and fault.kind == "status":
            for _ in self._body():
                pass
            self._send_status(fault)
            return
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        upstream = owner.upstream_connection()
        try:
            # Header by header: a dict would merge repeated ones (Accept, as clients send it).
            upstream.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and not (
                        chunked and name.lower() == "content-length"):
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for chunk in self._body() if has_body else ():
                upstream.send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
        except OSError as e:
            upstream.close()
            self._send_simple(502, f"upstream: {e}".encode())
            return
        try:
            self._relay(response, fault)
        finally:
            upstream.close()

    def _send_simple(self, status: int, body: bytes,
                     extra: Sequence[tuple[str, str]] = (), fault: _Fault | None = None) -> None:
        self._record(status, fault)
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_status(self, fault: _Fault) -> None:
        code = _REASONS.get(fault.code, "UNKNOWN")
        body = json.dumps({"errors": [{"code": code, "message": f"injected {fault.code}"}]})
        extra = [("Content-Type", "application/json")]
        if fault.retry_after is not None:
            extra.append(("Retry-After", str(fault.retry_after)))
        self._send_simple(fault.code, body.encode(), extra, fault)

    def _relay(self, response: http.client.HTTPResponse, fault: _Fault | None) -> None:
        owner = self.server.owner
        headers: list[tuple[str, str]] = []
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "location":
                value = value.replace(owner.upstream_origin, owner.url)
            headers.append((name, value))
        bodiless = (self.command == "HEAD" or response.status in (204, 304)
                    or 100 <= response.status < 200)
        chunks: Iterator[bytes]
        if bodiless:
            chunks = iter(())
        elif response.getheader("Content-Length") is None:
            data = response.read()
            headers.append(("Content-Length", str(len(data))))
            chunks = iter((data,))
        else:
            chunks = iter(lambda: response.read(1 << 16), b"")
        self._record(response.status, fault)
        self.send_response_only(response.status)   # upstream's Date and Server go as they came
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        for chunk in chunks:
            if fault is not None and fault.kind == "corrupt" and (
                    sent <= fault.offset < sent + len(chunk)):
                i = fault.offset - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
            if fault is not None and fault.kind == "reset" and sent + len(chunk) >= fault.nbytes:
                self.wfile.write(chunk[:fault.nbytes - sent])
                self._reset()
                return
            self.wfile.write(chunk)
            sent += len(chunk)
        if fault is not None and fault.kind == "reset":
            self._reset()   # the body was shorter than nbytes: reset after all of it

    def _reset(self) -> None:
        """Close with SO_LINGER 0 (an RST), once the client has the bytes already sent."""
        sock: socket.socket = self.connection
        deadline = time.monotonic() + 5
        buf = bytearray(4)
        while time.monotonic() < deadline:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
            if struct.unpack("i", buf)[0] == 0:
                break
            time.sleep(0.005)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.rfile.close()   # drop makefile's reference, so close() really closes the fd
        sock.close()


class _ProxyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)   # a client that hung up: quiet


class FaultProxy:
    """A plain-HTTP reverse proxy on 127.0.0.1 in front of ``upstream`` (an http:// URL).

    Forwards method, path, headers (Host kept, so the registry's absolute Locations name
    the proxy; any upstream origin left in a Location is rewritten too) and bodies
    (Content-Length or chunked, streamed both ways). Faults apply to the next ``times``
    requests whose method equals ``method`` (None: any) and whose path (with query)
    matches the regex ``path``; the first programmed fault that matches wins.
    ``requests`` lists a ``ProxiedRequest`` per request, recorded as its status line goes
    out."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        assert parts.scheme == "http" and parts.hostname, "the proxy fronts plain HTTP"
        self.upstream_origin = f"http://{parts.netloc}"
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._requests: list[ProxiedRequest] = []
        self._served: _InThread | None = None

    @property
    def host(self) -> str:
        assert self._served is not None, "proxy not started"
        return f"127.0.0.1:{self._served.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo_tag: str) -> str:
        return f"{self.host}/{repo_tag}"

    def skopeo_args(self, direction: Direction = "dest") -> list[str]:
        p = f"--{direction}-" if direction else "--"
        return [f"{p}tls-verify=false", f"{p}no-creds"]

    # faults
    def _add(self, fault: _Fault) -> Self:
        with self._lock:
            self._faults.append(fault)
        return self

    def reset_after(self, nbytes: int, *, path: str = "", method: str | None = "GET",
                    times: int = 1) -> Self:
        """Send the response headers and ``nbytes`` of body, then reset the connection."""
        return self._add(_Fault("reset", method, re.compile(path), times, nbytes=nbytes))

    def status(self, code: int, *, path: str = "", method: str | None = None, times: int = 1,
               retry_after: int | None = None) -> Self:
        """Answer ``code`` (with a registry-style JSON error and ``Retry-After`` if given)
        without forwarding the request."""
        return self._add(_Fault("status", method, re.compile(path), times, code=code,
                                retry_after=retry_after))

    def corrupt_byte(self, offset: int, *, path: str = "", method: str | None = "GET",
                     times: int = 1) -> Self:
        """Forward, but flip (xor 0xFF) the body byte at ``offset`` of the body sent."""
        return self._add(_Fault("corrupt", method, re.compile(path), times, offset=offset))

    def take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    @property
    def pending_faults(self) -> int:
        """How many fault applications are still to come."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> None:
        """Forget programmed faults and recorded requests."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()

    # records
    def record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def upstream_connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self._upstream_addr, timeout=60)

    # lifecycle
    def start(self) -> Self:
        self._served = _InThread(_ProxyHTTPServer, _ProxyHandler, self)
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- images -------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """A deterministic gzip layer of regular files: (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), _sha256(raw.getvalue())


class _Layout:
    """A minimal OCI layout writer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.manifests: list[dict[str, Any]] = []

    def put(self, data: bytes) -> str:
        digest = _sha256(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def link(self, source_layout: Path, digest: str) -> None:
        """Bring a blob from another layout (hard link if possible)."""
        rel = Path("blobs", *digest.split(":", 1))
        dest = self.root / rel
        if dest.exists():
            return
        try:
            os.link(source_layout / rel, dest)
        except OSError:
            shutil.copyfile(source_layout / rel, dest)

    def put_json(self, value: Mapping[str, Any], media_type: str,
                 **extra: Any) -> dict[str, Any]:
        data = json.dumps(value, separators=(",", ":")).encode()
        return {"mediaType": media_type, "digest": self.put(data), "size": len(data), **extra}

    def tag(self, descriptor: Mapping[str, Any], ref: str) -> None:
        annotations = {**descriptor.get("annotations", {}), REF_NAME: ref}
        self.manifests.append({**descriptor, "annotations": annotations})
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}))


def write_image_layout(dest: Path, ref: str = "latest", *, arch: str = "amd64",
                       files: Mapping[str, bytes] | None = None) -> str:
    """A tiny single-layer linux/ARCH image as an OCI layout at ``dest``, tagged ``ref``
    (other refs already there are kept). Returns the manifest digest."""
    index = dest / "index.json"
    old = json.loads(index.read_text())["manifests"] if index.exists() else []
    layout = _Layout(dest)
    layout.manifests = [m for m in old if m.get("annotations", {}).get(REF_NAME) != ref]
    blob, diff_id = _layer(files if files is not None else {"hello.txt": b"hello\n"})
    layer = {"mediaType": OCI_LAYER_GZIP, "digest": layout.put(blob), "size": len(blob)}
    config = {"architecture": arch, "os": "linux",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created_by": "write_image_layout"}]}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": layout.put_json(config, OCI_CONFIG), "layers": [layer]}
    descriptor = layout.put_json(manifest, OCI_MANIFEST)
    layout.tag(descriptor, ref)
    return str(descriptor["digest"])


@dataclass(frozen=True)
class MultiPlatformImage:
    """A pushed two-platform image: ``reference`` (host/repo:tag), the list's ``digest``
    and ``media_type``, and each platform's manifest digest as the registry holds it,
    keyed "linux/amd64" and "linux/arm64". Each platform has a last layer with
    ``/platform`` holding its architecture name ("amd64\\n" / "arm64\\n")."""
    reference: str
    digest: str
    media_type: str
    manifests: Mapping[str, str]

    def by_digest(self, platform: str) -> str:
        """``host/repo@digest`` of one platform's manifest."""
        return f"{self.reference.rsplit(':', 1)[0]}@{self.manifests[platform]}"


def _read_blob(layout_dir: Path, digest: str) -> bytes:
    return Path(layout_dir, "blobs", *digest.split(":", 1)).read_bytes()


def _docker_full_name(ref: str) -> str:
    """``ref`` as Docker qualifies it: ``busybox`` is ``docker.io/library/busybox:latest``."""
    domain, slash, rest = ref.partition("/")
    if not slash or ("." not in domain and ":" not in domain and domain != "localhost"):
        domain, rest = "docker.io", ref
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    if "@" not in rest and ":" not in rest.rsplit("/", 1)[-1]:
        rest += ":latest"
    return f"{domain}/{rest}"


def layout_ref(layout_dir: Path, ref: str) -> str:
    """The ref name ``layout_dir/index.json`` holds for ``ref``: ``ref`` itself, or as the
    distill store records names (``busybox:latest`` is ``docker.io/library/busybox:latest``)."""
    names = {d.get("annotations", {}).get(REF_NAME)
             for d in json.loads((layout_dir / "index.json").read_text())["manifests"]}
    for candidate in (ref, _docker_full_name(ref)):
        if candidate in names:
            return candidate
    raise KeyError(f"{ref!r} not in {layout_dir}/index.json")


def _find_manifest(layout_dir: Path, ref: str) -> dict[str, Any]:
    """The descriptor of ``ref``'s manifest (of its amd64 one, or its first, if an index)."""
    ref = layout_ref(layout_dir, ref)
    index = json.loads((layout_dir / "index.json").read_text())
    desc = next(d for d in index["manifests"] if d.get("annotations", {}).get(REF_NAME) == ref)
    if desc["mediaType"] not in (OCI_INDEX, DOCKER_LIST):
        return dict(desc)
    inner = json.loads(_read_blob(layout_dir, desc["digest"]))["manifests"]
    amd64 = [d for d in inner if d.get("platform", {}).get("architecture") == "amd64"]
    return dict((amd64 or inner)[0])


def push_two_platform_index(registry: RegistryServer, layout_dir: Path, ref: str,
                            repo_tag: str, *, manifest_list: bool = False) -> MultiPlatformImage:
    """Push ``ref`` of the OCI layout ``layout_dir`` (e.g. the distill store, or a layout
    from ``write_image_layout``) as a two-platform image: linux/amd64 and linux/arm64, each
    the image plus a layer with ``/platform``, the arm64 config saying arm64. An OCI index,
    or with ``manifest_list`` a Docker manifest list (``skopeo copy --all --format v2s2``).
    The source layout is not modified."""
    source = _find_manifest(layout_dir, ref)
    manifest = json.loads(_read_blob(layout_dir, source["digest"]))
    config = json.loads(_read_blob(layout_dir, manifest["config"]["digest"]))
    docker = manifest.get("mediaType", source["mediaType"]) == DOCKER_MANIFEST
    with tempfile.TemporaryDirectory(prefix="two-platform-") as tmp:
        layout = _Layout(Path(tmp) / "layout")
        for desc in manifest["layers"]:
            layout.link(layout_dir, desc["digest"])
        entries = []
        for arch in ("amd64", "arm64"):
            blob, diff_id = _layer({"platform": f"{arch}\n".encode()})
            layer = {"mediaType": DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP,
                     "digest": layout.put(blob), "size": len(blob)}
            cfg = {**config, "architecture": arch,
                   "rootfs": {"type": "layers",
                              "diff_ids": [*config["rootfs"]["diff_ids"], diff_id]},
                   "history": [*config.get("history", []),
                               {"created_by": f"push_two_platform_index: /platform {arch}"}]}
            cfg.pop("variant", None)
            if arch == "arm64":
                cfg["variant"] = "v8"
            new = {**manifest, "config": layout.put_json(cfg, manifest["config"]["mediaType"]),
                   "layers": [*manifest["layers"], layer]}
            platform = {"architecture": arch, "os": "linux",
                        **({"variant": "v8"} if arch == "arm64" else {})}
            entries.append(layout.put_json(new, manifest.get("mediaType", source["mediaType"]),
                                           platform=platform))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        layout.tag(layout.put_json(index, OCI_INDEX), "multi")
        registry.push_layout(layout.root, "multi", repo_tag, all_images=True,
                             format="v2s2" if manifest_list else None)
    repo, _, tag = repo_tag.rpartition(":")
    raw, media_type = registry.get_manifest(repo, tag)
    digests = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
               for m in json.loads(raw)["manifests"]}
    return MultiPlatformImage(registry.ref(repo_tag), _sha256(raw), media_type, digests)
