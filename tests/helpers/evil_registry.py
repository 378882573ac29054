"""A hostile registry on 127.0.0.1, for tests of what distill does when a registry lies.

``EvilRegistry`` answers the distribution API the way a registry does, for one tiny image
(``TinyImage``) under any repository name, and accepts uploads. A test takes over any
request with a *hook*: a function given the request handler that answers it itself
(returning True) or lets the default answer (returning False). Every request is recorded
(method, path, headers) before the hook sees it, so a test can count what arrived and see
which credentials went where.

The handler offers the answers an attacker sends: ``reply`` (any status, headers, body),
``trickle`` (a body a few bytes at a time) and ``cut`` (a body that breaks off). Nothing
here is a mock of distill: the CLI (or the library) talks HTTP to a real socket.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import socket
import ssl
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Self

from tests.helpers.registry import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, TlsFiles

Hook = Callable[["EvilHandler"], bool]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TinyImage:
    """A one-layer linux image (the layer holds ``files``): its blobs by digest, its
    manifest and the manifest's digest."""

    def __init__(self, files: Mapping[str, bytes] | None = None, arch: str = "amd64") -> None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in (files or {"hello.txt": b"hello\n"}).items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        self.layer = gzip.compress(raw.getvalue(), mtime=0)
        self.config = json.dumps({
            "architecture": arch, "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(raw.getvalue())]},
            "history": [{"created_by": "tests/helpers/evil_registry.py"}]}).encode()
        self.layer_digest, self.config_digest = sha256(self.layer), sha256(self.config)
        self.blobs = {self.layer_digest: self.layer, self.config_digest: self.config}
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest,
                       "size": len(self.config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": self.layer_digest,
                        "size": len(self.layer)}]}).encode()
        self.digest = sha256(self.manifest)


class Seen(NamedTuple):
    """A request as it arrived."""
    method: str
    path: str                        # with the query string
    headers: dict[str, str]          # names lower-cased

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]


class EvilHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "evil-registry"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- answers ---------------------------------------------------------------------------
    @property
    def registry(self) -> EvilRegistry:
        return self.server.owner

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def reply(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
              content_type: str = "application/json") -> bool:
        """Answer with exactly these headers (plus Content-Type and Content-Length)."""
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def trickle(self, body: bytes, *, piece: int, every: float, give_up_after: float,
                content_type: str = "application/octet-stream") -> bool:
        """A 200 with ``body`` (its Content-Length said up front) sent ``piece`` bytes every
        ``every`` seconds; after ``give_up_after`` seconds the connection is closed (so a
        client without a deadline fails its test instead of hanging it)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        ends = time.monotonic() + give_up_after
        try:
            for start in range(0, len(body), piece):
                if time.monotonic() > ends:
                    break
                self.wfile.write(body[start:start + piece])
                self.wfile.flush()
                time.sleep(every)
        except OSError:
            pass
        self.close_connection = True
        return True

    def cut(self, declared: int, body: bytes) -> bool:
        """A 200 that promises ``declared`` bytes, sends ``body`` and breaks off."""
        self.send_response(200)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True
        return True

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- dispatch --------------------------------------------------------------------------
    def _any(self) -> None:
        self.registry._record(Seen(self.command, self.path,
                                   {k.lower(): v for k, v in self.headers.items()}))
        hook = self.registry.hook
        if hook is not None and hook(self):
            return
        self.default()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def default(self) -> bool:
        """What a registry holding ``registry.image`` (in every repository) answers."""
        image, route = self.registry.image, self.route
        if route == "/v2/":
            return self.reply(200, b"{}")
        if "/manifests/" in route and self.command in ("GET", "HEAD"):
            reference = route.rsplit("/", 1)[1]
            if reference.startswith("sha256:") and reference != image.digest:
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return self.reply(200, image.manifest, {"Docker-Content-Digest": image.digest},
                              OCI_MANIFEST)
        if "/manifests/" in route and self.command == "PUT":
            body = self.read_body()
            return self.reply(201, b"", {"Docker-Content-Digest": sha256(body),
                                         "Location": route})
        if "/blobs/uploads/" in route:
            return self._upload(route)
        if "/blobs/" in route and self.command in ("GET", "HEAD"):
            digest = route.rsplit("/", 1)[1]
            blob = image.blobs.get(digest)
            if blob is None:
                return self.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return self.reply(200, blob, {"Docker-Content-Digest": digest},
                              "application/octet-stream")
        return self.reply(404, b'{"errors":[{"code":"UNSUPPORTED"}]}')

    def _upload(self, route: str) -> bool:
        repo_path = route.split("/blobs/uploads/", 1)[0]
        if self.command == "POST":
            return self.reply(202, b"", {"Location": f"{repo_path}/blobs/uploads/"
                                                     f"{uuid.uuid4().hex}", "Range": "0-0"})
        body = self.read_body()
        if self.command == "PATCH":
            return self.reply(202, b"", {"Location": route, "Range": f"0-{len(body) - 1}"})
        if self.command == "PUT":
            digest = self.path.partition("digest=")[2].split("&")[0].replace("%3A", ":")
            return self.reply(201, b"", {"Location": f"{repo_path}/blobs/{digest}",
                                         "Docker-Content-Digest": digest})
        return self.reply(405, b"{}")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: EvilRegistry

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass       # clients that hang up on a hostile answer are expected


class EvilRegistry:
    """A registry server on 127.0.0.1 (plain HTTP, or HTTPS with ``tls``) whose answers a
    ``hook`` may take over; ``phase`` is free for a test to switch behaviour (pull, then
    push). Use as a context manager."""

    def __init__(self, hook: Hook | None = None, *, image: TinyImage | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.hook = hook
        self.image = image or TinyImage()
        self.phase = ""
        self._requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), EvilHandler)
        self._server.owner = self
        self.tls = tls
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert_path), str(tls.key_path))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="evil-registry")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ref(self, repo_tag: str = "x/y:1") -> str:
        return f"{self.host}/{repo_tag}"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._requests.append(seen)

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for r in self.requests if r.method == method and fragment in r.route)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def basic(username: str, password: str) -> str:
    """The Authorization header value of Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def docker_config(directory: Path, logins: Mapping[str, tuple[str, str]]) -> Path:
    """A DOCKER_CONFIG directory whose config.json holds ``{host: (user, password)}``."""
    directory.mkdir(parents=True, exist_ok=True)
    auths = {host: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
             for host, (u, p) in logins.items()}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return directory
