"""Pulling when things go wrong: a FaultProxy in front of a real registry (resets mid-blob,
503s, 429 with Retry-After, a flipped byte), multi-platform indexes, mirrors from
registries.toml, and hostile or absent registries. After every fault the store holds only
verified blobs and no partial download."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.registry import (
    OCI_MANIFEST,
    FaultProxy,
    MultiPlatformImage,
    ProxiedRequest,
    RegistryServer,
    push_two_platform_index,
    unique_repo,
    write_image_layout,
)

pytestmark = pytest.mark.integration

REF_NAME = "org.opencontainers.image.ref.name"


# -- helpers ---------------------------------------------------------------------------------

def _env(tmp_path: Path, registries_toml: str = "") -> dict[str, str]:
    """Registry settings from this test only, and no credentials of the user's."""
    conf = tmp_path / "registries.toml"
    conf.write_text(registries_toml)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir(exist_ok=True)
    return {"DISTILL_REGISTRIES": str(conf), "DOCKER_CONFIG": str(docker_config)}


def _stored_names(root: Path) -> dict[str, str]:
    index = root / "index.json"
    if not index.exists():
        return {}
    return {m["annotations"][REF_NAME]: m["digest"]
            for m in json.loads(index.read_text())["manifests"]}


def _blob_names(root: Path) -> set[str]:
    blobs = root / "blobs" / "sha256"
    return {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()


def assert_store_clean(root: Path) -> None:
    """Every blob hashes to its name, and no download is left under the store's tmp/."""
    for path in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path.name
    leftovers = [p for p in (root / "tmp").rglob("*") if not p.is_dir()]
    assert leftovers == [], leftovers


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit code 1, one 'error:' line, no traceback; returns stderr from the error line
    on (progress lines such as 'pulling …' may come before it)."""
    stderr = proc.stderr
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return "\n".join(lines[errors[0]:])


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _context(tmp_path: Path, dockerfile: str, name: str) -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


@dataclass(frozen=True)
class Pushed:
    """An image in registry_http: its repo:tag, manifest digest, layer and config."""
    repo_tag: str
    digest: str
    layer: str
    layer_size: int
    config: str

    @property
    def repo(self) -> str:
        return self.repo_tag.rsplit(":", 1)[0]


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer image whose layer is ~400 KB of incompressible bytes."""
    layout = tmp_path_factory.mktemp("big-layout")
    write_image_layout(layout, "latest", files={"random.bin": os.urandom(400_000),
                                                "hello.txt": b"hello\n"})
    return layout


@pytest.fixture(scope="module")
def pushed(big_layout: Path, registry_http: RegistryServer) -> Pushed:
    repo_tag = f"{unique_repo('faults')}:1"
    registry_http.push_layout(big_layout, "latest", repo_tag)
    repo = repo_tag.rsplit(":", 1)[0]
    raw, _ = registry_http.get_manifest(repo, "1")
    manifest = json.loads(raw)
    (layer,) = manifest["layers"]
    assert layer["size"] > 300_000
    return Pushed(repo_tag, "sha256:" + hashlib.sha256(raw).hexdigest(), layer["digest"],
                  layer["size"], manifest["config"]["digest"])


def _gets(proxy: FaultProxy, fragment: str) -> list[ProxiedRequest]:
    return [r for r in proxy.requests if r.method == "GET" and fragment in r.path]


def _pulled_ok(distill: RunDistill, ref: str, root: Path, env: dict[str, str],
               pushed: Pushed) -> None:
    distill("pull", ref, root=root, env=env)
    assert _stored_names(root)[ref] == pushed.digest
    assert {pushed.layer.split(":")[1], pushed.config.split(":")[1],
            pushed.digest.split(":")[1]} <= _blob_names(root)
    assert_store_clean(root)


# -- 1. faults through the proxy ---------------------------------------------------------------

def test_reset_mid_blob_resumes_with_range(distill: RunDistill, fault_proxy: FaultProxy,
                                           pushed: Pushed, tmp_path: Path) -> None:
    half = pushed.layer_size // 2
    fault_proxy.reset_after(half, path=f"/blobs/{pushed.layer}$")
    root = tmp_path / "store"
    _pulled_ok(distill, fault_proxy.ref(pushed.repo_tag), root, _env(tmp_path), pushed)
    assert fault_proxy.pending_faults == 0
    first, *rest = _gets(fault_proxy, pushed.layer)
    assert first.fault == "reset" and first.range is None
    assert len(rest) == 1, fault_proxy.requests
    resumed = rest[0]
    assert resumed.range is not None and resumed.range.startswith("bytes="), resumed
    offset = int(resumed.range.removeprefix("bytes=").rstrip("-"))
    assert resumed.range == f"bytes={offset}-"
    assert 0 < offset <= half, resumed.range
    assert resumed.status == 206


def test_reset_mid_manifest_and_ping_is_retried(distill: RunDistill, fault_proxy: FaultProxy,
                                                pushed: Pushed, tmp_path: Path) -> None:
    """Bodies read whole (the /v2/ ping's, a manifest) are asked again when cut short."""
    fault_proxy.reset_after(1, path="^/v2/$")
    fault_proxy.reset_after(40, path="/manifests/")
    root = tmp_path / "store"
    _pulled_ok(distill, fault_proxy.ref(pushed.repo_tag), root, _env(tmp_path), pushed)
    assert fault_proxy.pending_faults == 0
    pings = [r for r in fault_proxy.requests if r.path == "/v2/"]
    assert [r.fault for r in pings] == ["reset", None]
    manifests = _gets(fault_proxy, "/manifests/")
    assert [r.fault for r in manifests] == ["reset", None]


def test_503_on_manifest_and_blob_is_retried(distill: RunDistill, fault_proxy: FaultProxy,
                                             pushed: Pushed, tmp_path: Path) -> None:
    fault_proxy.status(503, path="/manifests/", method="GET")
    fault_proxy.status(503, path=f"/blobs/{pushed.layer}$", times=2)
    root = tmp_path / "store"
    _pulled_ok(distill, fault_proxy.ref(pushed.repo_tag), root, _env(tmp_path), pushed)
    assert fault_proxy.pending_faults == 0
    assert [r.status for r in _gets(fault_proxy, "/manifests/")] == [503, 200]
    assert [r.status for r in _gets(fault_proxy, pushed.layer)] == [503, 503, 200]


class TimedFaultProxy(FaultProxy):
    """A FaultProxy that also notes when (time.monotonic()) each request was answered."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.timed: list[tuple[float, ProxiedRequest]] = []
        self._times_lock = threading.Lock()

    def record(self, request: ProxiedRequest) -> None:
        with self._times_lock:
            self.timed.append((time.monotonic(), request))
        super().record(request)


@pytest.fixture
def timed_proxy(registry_http: RegistryServer) -> Iterator[TimedFaultProxy]:
    proxy = TimedFaultProxy(registry_http.url)
    proxy.start()
    yield proxy
    proxy.stop()


def test_429_waits_as_retry_after_says(distill: RunDistill, timed_proxy: TimedFaultProxy,
                                       pushed: Pushed, tmp_path: Path) -> None:
    timed_proxy.status(429, path=f"/blobs/{pushed.layer}$", retry_after=1)
    root = tmp_path / "store"
    _pulled_ok(distill, timed_proxy.ref(pushed.repo_tag), root, _env(tmp_path), pushed)
    tries = [(t, r) for t, r in timed_proxy.timed if r.method == "GET" and pushed.layer in r.path]
    assert [r.status for _, r in tries] == [429, 200]
    # the 429 is noted before it is sent, the retry once it is answered: the gap is at
    # least the client's wait
    assert tries[1][0] - tries[0][0] >= 0.95, tries


def test_corrupt_layer_is_refused_and_not_kept(distill: RunDistill, fault_proxy: FaultProxy,
                                               pushed: Pushed, tmp_path: Path) -> None:
    fault_proxy.corrupt_byte(pushed.layer_size // 3, path=f"/blobs/{pushed.layer}$")
    root = tmp_path / "store"
    ref = fault_proxy.ref(pushed.repo_tag)
    proc = distill("pull", ref, root=root, env=_env(tmp_path), check=False)
    stderr = assert_clean_failure(proc)
    assert pushed.layer in stderr.splitlines()[0]
    assert [r.fault for r in _gets(fault_proxy, pushed.layer)] == ["corrupt"]
    assert pushed.layer.split(":")[1] not in _blob_names(root)
    assert ref not in _stored_names(root)
    assert_store_clean(root)
    # the registry itself was fine: a second pull gets the image
    _pulled_ok(distill, ref, root, _env(tmp_path), pushed)


# -- 2. platform choice ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = tmp_path_factory.mktemp("small-layout")
    write_image_layout(layout, "latest", files={"hello.txt": b"hello\n"})
    return layout


@pytest.fixture(scope="module", params=[False, True], ids=["oci-index", "docker-list"])
def two_platform(request: pytest.FixtureRequest, small_layout: Path,
                 registry_http: RegistryServer) -> MultiPlatformImage:
    return push_two_platform_index(registry_http, small_layout, "latest",
                                   f"{unique_repo('multi')}:1", manifest_list=request.param)


def test_pull_platform_stores_that_platforms_manifest(
        distill: RunDistill, two_platform: MultiPlatformImage, tmp_path: Path) -> None:
    root = tmp_path / "store"
    ref = two_platform.reference
    proc = distill("pull", "--platform", "linux/arm64", ref, root=root, env=_env(tmp_path))
    assert f"Digest: {two_platform.digest}" in proc.stderr
    arm64 = two_platform.manifests["linux/arm64"]
    assert arm64 != two_platform.manifests["linux/amd64"]
    assert _stored_names(root)[ref] == arm64
    manifest = json.loads((root / "blobs/sha256" / arm64.split(":")[1]).read_bytes())
    config = json.loads((root / "blobs/sha256" /
                         manifest["config"]["digest"].split(":")[1]).read_bytes())
    assert config["architecture"] == "arm64"
    assert_store_clean(root)


@pytest.mark.parametrize(("dockerfile", "flags", "expected"), [
    ("FROM {ref}\n", ["--platform", "linux/arm64"], "arm64"),
    ("FROM --platform=linux/arm64 {ref}\n", [], "arm64"),
    ("FROM --platform=$BUILDPLATFORM {ref}\n", ["--platform", "linux/arm64"], "amd64"),
], ids=["flag", "from-platform", "buildplatform"])
def test_build_picks_the_platform(distill: RunDistill, two_platform: MultiPlatformImage,
                                  tmp_path: Path, dockerfile: str, flags: list[str],
                                  expected: str) -> None:
    root = tmp_path / "store"
    ctx = _context(tmp_path, dockerfile.format(ref=two_platform.reference), "ctx")
    dest = tmp_path / "out"
    distill("build", *flags, "--output", f"type=local,dest={dest}", str(ctx), root=root,
            env=_env(tmp_path))
    assert (dest / "platform").read_text() == f"{expected}\n"
    assert (dest / "hello.txt").read_text() == "hello\n"
    assert_store_clean(root)


def test_platform_not_on_offer(distill: RunDistill, two_platform: MultiPlatformImage,
                               tmp_path: Path) -> None:
    root = tmp_path / "store"
    env = _env(tmp_path)
    proc = distill("pull", "--platform", "linux/s390x", two_platform.reference, root=root,
                   env=env, check=False)
    line = assert_clean_failure(proc).splitlines()[0]
    assert "linux/s390x" in line and "linux/amd64" in line and "linux/arm64" in line, line
    ctx = _context(tmp_path, f"FROM {two_platform.reference}\n", "ctx")
    proc = distill("build", "--platform", "linux/s390x", str(ctx), root=root, env=env,
                   check=False)
    stderr = assert_clean_failure(proc)
    assert "linux/amd64" in stderr and "linux/arm64" in stderr, stderr
    assert "Dockerfile:1" in stderr
    assert _stored_names(root) == {}


# -- 3. mirrors --------------------------------------------------------------------------------

def _mirror_toml(host: str, mirror: str) -> str:
    return f'[registry."{host}"]\nmirrors = ["{mirror}"]\n'


def test_mirror_serves_an_image_its_registry_cannot(
        distill: RunDistill, fresh_registry: RegistryServer, small_layout: Path,
        tmp_path: Path) -> None:
    repo_tag = f"{unique_repo('mirrored')}:1"
    fresh_registry.push_layout(small_layout, "latest", repo_tag)
    digest = fresh_registry.inspect(repo_tag)["Digest"]
    down = f"127.0.0.1:{_closed_port()}"            # the registry itself is down
    env = _env(tmp_path, _mirror_toml(down, fresh_registry.host))
    root = tmp_path / "store"
    ref = f"{down}/{repo_tag}"
    proc = distill("pull", ref, root=root, env=env)
    assert f"from {fresh_registry.host}" in proc.stderr
    assert _stored_names(root)[ref] == digest        # named as asked, not as the mirror
    assert_store_clean(root)


def test_mirror_without_the_image_falls_back_to_the_registry(
        distill: RunDistill, fresh_registry: RegistryServer, fault_proxy: FaultProxy,
        pushed: Pushed, tmp_path: Path) -> None:
    env = _env(tmp_path, _mirror_toml(fault_proxy.host, fresh_registry.host))
    root = tmp_path / "store"
    ref = fault_proxy.ref(pushed.repo_tag)
    proc = distill("pull", ref, root=root, env=env)
    assert f"mirror {fresh_registry.host} failed" in proc.stderr
    assert f"from {fault_proxy.host}" in proc.stderr
    assert [r.status for r in _gets(fault_proxy, "/manifests/")] == [200]
    assert _gets(fault_proxy, pushed.layer)
    assert _stored_names(root)[ref] == pushed.digest
    assert_store_clean(root)


# -- 4. bad registries -------------------------------------------------------------------------

class _HugeManifestHandler(http.server.BaseHTTPRequestHandler):
    """A 'registry' answering every manifest request with 5 MiB of JSON."""
    protocol_version = "HTTP/1.1"
    SIZE = 5 << 20

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "/manifests/" not in self.path:
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        head = b'{"schemaVersion":2,"mediaType":"%s","pad":"' % OCI_MANIFEST.encode()
        tail = b'"}'
        self.send_response(200)
        self.send_header("Content-Type", OCI_MANIFEST)
        self.send_header("Content-Length", str(self.SIZE))
        self.end_headers()
        try:
            self.wfile.write(head)
            pad = self.SIZE - len(head) - len(tail)
            while pad > 0:
                n = min(pad, 1 << 16)
                self.wfile.write(b"a" * n)
                pad -= n
            self.wfile.write(tail)
        except OSError:
            pass   # the client hung up, as it should


@pytest.fixture
def huge_manifest_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeManifestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_manifest_over_4_mib_is_refused(distill: RunDistill, huge_manifest_server: str,
                                        tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = distill("pull", f"{huge_manifest_server}/huge:1", root=root, env=_env(tmp_path),
                   check=False)
    line = assert_clean_failure(proc).splitlines()[0]
    assert "larger than 4194304 bytes" in line and "/v2/huge/manifests/1" in line, line
    assert _stored_names(root) == {}
    assert _blob_names(root) == set()
    assert_store_clean(root)


def test_manifest_not_matching_its_digest_is_refused(
        distill: RunDistill, fault_proxy: FaultProxy, pushed: Pushed,
        tmp_path: Path) -> None:
    fault_proxy.corrupt_byte(20, path=f"/manifests/{pushed.digest}$")
    root = tmp_path / "store"
    ref = fault_proxy.ref(f"{pushed.repo}@{pushed.digest}")
    proc = distill("pull", ref, root=root, env=_env(tmp_path), check=False)
    line = assert_clean_failure(proc).splitlines()[0]
    assert pushed.digest in line and "hashes to" in line, line
    assert [r.fault for r in _gets(fault_proxy, "/manifests/")] == ["corrupt"]
    assert _stored_names(root) == {}
    assert _blob_names(root) == set()       # nothing fetched past the manifest
    assert_store_clean(root)


def test_platform_manifest_not_matching_the_index_is_refused(
        distill: RunDistill, registry_http: RegistryServer, small_layout: Path,
        tmp_path: Path) -> None:
    """The index names each platform's manifest by digest: a different one is refused."""
    image = push_two_platform_index(registry_http, small_layout, "latest",
                                    f"{unique_repo('multi')}:1")
    arm64 = image.manifests["linux/arm64"]
    with FaultProxy(registry_http.url) as proxy:
        proxy.corrupt_byte(20, path=f"/manifests/{arm64}$")
        ref = proxy.ref(image.reference.split("/", 1)[1])
        root = tmp_path / "store"
        proc = distill("pull", "--platform", "linux/arm64", ref, root=root,
                       env=_env(tmp_path), check=False)
        line = assert_clean_failure(proc).splitlines()[0]
        assert arm64 in line and "hashes to" in line, line
        assert proxy.pending_faults == 0
    assert _stored_names(root) == {}
    assert_store_clean(root)


def test_404_names_the_repository_and_what_to_check(
        distill: RunDistill, registry_http: RegistryServer, tmp_path: Path) -> None:
    repo = unique_repo("absent")
    root = tmp_path / "store"
    proc = distill("pull", registry_http.ref(f"{repo}:1"), root=root, env=_env(tmp_path),
                   check=False)
    stderr = assert_clean_failure(proc)
    error, *rest = stderr.strip().splitlines()
    assert f"{registry_http.host}/{repo}" in error and "404" in error, stderr
    assert len(rest) == 1 and rest[0].startswith("hint: ") and "check the name" in rest[0]
    assert _stored_names(root) == {}


def test_registry_down_is_a_clear_error(distill: RunDistill, tmp_path: Path) -> None:
    host = f"127.0.0.1:{_closed_port()}"
    root = tmp_path / "store"
    proc = distill("pull", f"{host}/nothing:1", root=root, env=_env(tmp_path), check=False)
    stderr = assert_clean_failure(proc)
    line = stderr.splitlines()[0]
    assert host in line and "refused" in line.lower(), stderr
    assert _stored_names(root) == {}
