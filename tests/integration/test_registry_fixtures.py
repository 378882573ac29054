"""The registry test infrastructure works: real registries in three auth modes, driven with
skopeo and httpx; the fault proxy's faults happen as programmed; two-platform images."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.helpers.registry import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    FaultProxy,
    RegistryServer,
    SkopeoError,
    TokenRequest,
    push_two_platform_index,
    skopeo,
    unique_repo,
    write_image_layout,
)

pytestmark = pytest.mark.integration

PAYLOAD = os.urandom(256 * 1024)   # incompressible: the layer blob is about this big


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout with one tiny image tagged "v1"."""
    root = tmp_path_factory.mktemp("layout")
    write_image_layout(root, "v1", files={"payload.bin": PAYLOAD, "etc/hello": b"hi\n"})
    return root


def layer_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest[7:]).read_bytes())
    return str(manifest["layers"][0]["digest"])


def test_http_registry_push_inspect_pull(registry_http: RegistryServer, layout: Path,
                                         tmp_path: Path) -> None:
    repo = unique_repo("http")
    assert registry_http.scheme == "http" and registry_http.url == f"http://{registry_http.host}"
    assert registry_http.push_layout(layout, "v1", f"{repo}:1") == f"{registry_http.host}/{repo}:1"
    info = registry_http.inspect(f"{repo}:1")
    assert info["Architecture"] == "amd64"
    assert info["Layers"] == [layer_digest(layout)]
    registry_http.pull_to_layout(f"{repo}:1", tmp_path / "back", "copy")
    back = json.loads((tmp_path / "back/index.json").read_text())["manifests"][0]
    assert back["digest"] == info["Digest"]


def test_fresh_registry_is_empty(fresh_registry: RegistryServer,
                                 registry_http: RegistryServer) -> None:
    assert fresh_registry.host != registry_http.host
    with fresh_registry.client() as client:
        assert client.get("/v2/_catalog").json() == {"repositories": []}


def test_tls_basic_registry(registry_tls_basic: RegistryServer, layout: Path) -> None:
    registry = registry_tls_basic
    repo = unique_repo("tls")
    assert registry.scheme == "https" and registry.ca_path and registry.username
    registry.push_layout(layout, "v1", f"{repo}:1")
    assert registry.inspect(f"{repo}:1")["Layers"] == [layer_digest(layout)]

    with pytest.raises(SkopeoError, match="unauthorized"):
        registry.inspect(f"{repo}:1", creds=(registry.username, "wrong"))
    with pytest.raises(SkopeoError, match="unauthorized"):
        registry.push_layout(layout, "v1", f"{repo}:anon", creds=False)

    with registry.client() as client:   # basic auth, the CA trusted
        assert client.get("/v2/").status_code == 200
    with registry.client(auth=None) as client:
        response = client.get("/v2/")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    # The certificate names localhost too, and only the fixture's CA vouches for it.
    port = registry.host.rsplit(":", 1)[1]
    ssl_context = registry.tls.ssl_context() if registry.tls else None
    assert ssl_context is not None
    auth = (registry.username, registry.password or "")
    assert httpx.get(f"https://localhost:{port}/v2/", verify=ssl_context,
                     auth=auth).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{registry.url}/v2/")


def test_token_registry(registry_token: RegistryServer, layout: Path) -> None:
    registry, token_server = registry_token, registry_token.token
    assert token_server is not None
    repo = unique_repo("token")
    with pytest.raises(SkopeoError, match="denied"):
        registry.push_layout(layout, "v1", f"{repo}:1", creds=False)
    assert TokenRequest(f"repository:{repo}:pull,push", False) in token_server.token_requests

    token_server.clear_requests()
    registry.push_layout(layout, "v1", f"{repo}:1")
    assert (f"repository:{repo}:pull,push", True) in token_server.token_requests

    token_server.clear_requests()
    assert registry.inspect(f"{repo}:1", creds=False)["Layers"] == [layer_digest(layout)]
    assert token_server.token_requests
    assert all(r == (f"repository:{repo}:pull", False) for r in token_server.token_requests)

    with pytest.raises(SkopeoError, match="username/password"):
        registry.inspect(f"{repo}:1", creds=(token_server.username, "wrong"))


def test_token_flow_by_hand(registry_token: RegistryServer, layout: Path) -> None:
    """The registry's challenge names the token server; its tokens are honoured as granted."""
    registry, token_server = registry_token, registry_token.token
    assert token_server is not None
    repo = unique_repo("byhand")
    registry.push_layout(layout, "v1", f"{repo}:1")
    with registry.client() as client:
        challenge = client.get(f"/v2/{repo}/tags/list").headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{token_server.url}"')
        assert f'service="{token_server.service}"' in challenge
        assert f'scope="repository:{repo}:pull"' in challenge

        params = {"service": token_server.service, "scope": f"repository:{repo}:pull,push"}
        wrong = httpx.get(token_server.url, params=params, auth=(token_server.username, "x"))
        assert wrong.status_code == 401
        anonymous = httpx.get(token_server.url, params=params).json()
        assert anonymous["expires_in"] == 300 and anonymous["token"] == anonymous["access_token"]
        bearer = {"Authorization": f"Bearer {anonymous['token']}"}
        assert client.get(f"/v2/{repo}/tags/list", headers=bearer).json()["tags"] == ["1"]
        assert client.post(f"/v2/{repo}/blobs/uploads/", headers=bearer).status_code == 401

        granted = httpx.get(token_server.url, params=params,
                            auth=(token_server.username, token_server.password)).json()
        bearer = {"Authorization": f"Bearer {granted['token']}"}
        assert client.post(f"/v2/{repo}/blobs/uploads/", headers=bearer).status_code == 202
        oauth = httpx.post(token_server.url, data={
            "grant_type": "password", "service": token_server.service, "client_id": "test",
            "username": token_server.username, "password": token_server.password,
            "scope": f"repository:{repo}:pull,push"}).json()
        bearer = {"Authorization": f"Bearer {oauth['access_token']}"}
        assert client.post(f"/v2/{repo}/blobs/uploads/", headers=bearer).status_code == 202

        forged = granted["token"][:-4] + ("AAAA" if granted["token"][-4:] != "AAAA" else "BBBB")
        response = client.get(f"/v2/{repo}/tags/list", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401


@pytest.fixture
def pushed(registry_http: RegistryServer, layout: Path) -> tuple[str, str]:
    """(repository, layer digest) of the tiny image pushed to registry_http."""
    repo = unique_repo("proxied")
    registry_http.push_layout(layout, "v1", f"{repo}:1")
    return repo, layer_digest(layout)


def test_proxy_forwards_pushes_and_pulls(fault_proxy: FaultProxy, layout: Path,
                                         tmp_path: Path) -> None:
    repo = unique_repo("via-proxy")
    skopeo("copy", *fault_proxy.skopeo_args("dest"), f"oci:{layout}:v1",
           f"docker://{fault_proxy.ref(repo)}:1")
    uploads = [r for r in fault_proxy.requests if "/blobs/uploads/" in r.path]
    assert {r.method for r in uploads} >= {"POST", "PUT"}   # Locations led back here
    assert all(r.status < 400 for r in uploads)
    skopeo("copy", *fault_proxy.skopeo_args("src"), f"docker://{fault_proxy.ref(repo)}:1",
           f"oci:{tmp_path / 'back'}:v1")
    assert (tmp_path / "back/blobs/sha256" / layer_digest(layout)[7:]).exists()


def test_proxy_streams_a_chunked_upload(fault_proxy: FaultProxy,
                                        registry_http: RegistryServer) -> None:
    repo = unique_repo("chunked")
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=fault_proxy.url) as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        assert location.startswith(fault_proxy.url + "/")   # the client stays on the proxy
        patched = client.patch(location, content=(data[i:i + 50_000]
                                                  for i in range(0, len(data), 50_000)))
        assert patched.status_code == 202, patched.text
        location = patched.headers["Location"]   # (params= would replace its query)
        done = client.put(f"{location}{'&' if '?' in location else '?'}digest={digest}")
        assert done.status_code == 201, done.text
    patch = next(r for r in fault_proxy.requests if r.method == "PATCH")
    assert patch.headers["Transfer-Encoding"] == "chunked"
    assert registry_http.get_blob(repo, digest) == data


def test_proxy_status_faults(fault_proxy: FaultProxy, pushed: tuple[str, str]) -> None:
    repo, digest = pushed
    blob = f"/v2/{repo}/blobs/{digest}"
    fault_proxy.status(503, path=r"/blobs/sha256:", times=2)
    fault_proxy.status(429, path=r"/manifests/", retry_after=1)
    # distribution 2.8 answers 404 for an OCI manifest unless Accept names its type
    with httpx.Client(base_url=fault_proxy.url, headers={"Accept": OCI_MANIFEST}) as client:
        assert client.head(f"/v2/{repo}/manifests/1").status_code == 429
        assert [client.get(blob).status_code for _ in range(3)] == [503, 503, 200]
        response = client.get(f"/v2/{repo}/manifests/1")
    assert response.status_code == 200, response.text
    seen = [(r.method, r.status, r.fault) for r in fault_proxy.requests]
    assert seen == [("HEAD", 429, "status"), ("GET", 503, "status"), ("GET", 503, "status"),
                    ("GET", 200, None), ("GET", 200, None)]
    assert fault_proxy.pending_faults == 0


def test_proxy_retry_after_header(fault_proxy: FaultProxy, pushed: tuple[str, str]) -> None:
    repo, digest = pushed
    fault_proxy.status(429, path=r"/blobs/", method="GET", retry_after=1)
    response = httpx.get(f"{fault_proxy.url}/v2/{repo}/blobs/{digest}")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_proxy_reset_then_range_resume(fault_proxy: FaultProxy,
                                       pushed: tuple[str, str]) -> None:
    repo, digest = pushed
    blob_url = f"{fault_proxy.url}/v2/{repo}/blobs/{digest}"
    whole = httpx.get(blob_url).content
    assert len(whole) > 200_000
    fault_proxy.clear()
    fault_proxy.reset_after(100_000, path=r"/blobs/sha256:")
    received = bytearray()
    with pytest.raises(httpx.TransportError), httpx.stream("GET", blob_url) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(whole)
        for chunk in response.iter_raw():
            received += chunk
    assert bytes(received) == whole[:100_000]
    rest = httpx.get(blob_url, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206 and rest.content == whole[100_000:]
    assert [(r.range, r.status, r.fault) for r in fault_proxy.requests] == [
        (None, 200, "reset"), ("bytes=100000-", 206, None)]


def test_proxy_corrupt_byte(fault_proxy: FaultProxy, pushed: tuple[str, str]) -> None:
    repo, digest = pushed
    blob_url = f"{fault_proxy.url}/v2/{repo}/blobs/{digest}"
    fault_proxy.corrupt_byte(70_000, path=r"/blobs/sha256:")
    bad, good = httpx.get(blob_url).content, httpx.get(blob_url).content
    assert len(bad) == len(good)
    assert [i for i in range(len(good)) if bad[i] != good[i]] == [70_000]
    assert bad[70_000] == good[70_000] ^ 0xFF


@pytest.mark.parametrize("manifest_list", [False, True], ids=["oci-index", "docker-list"])
def test_two_platform_image(registry_http: RegistryServer, layout: Path,
                            manifest_list: bool) -> None:
    repo = unique_repo("multi")
    image = push_two_platform_index(registry_http, layout, "v1", f"{repo}:1",
                                    manifest_list=manifest_list)
    assert image.reference == f"{registry_http.host}/{repo}:1"
    assert image.media_type == (DOCKER_LIST if manifest_list else OCI_INDEX)
    assert set(image.manifests) == {"linux/amd64", "linux/arm64"}
    raw, media_type = registry_http.get_manifest(repo, "1")
    assert media_type == image.media_type
    assert registry_http.get_manifest(repo, image.digest)[0] == raw
    platforms = {m["digest"]: m["platform"] for m in json.loads(raw)["manifests"]}
    assert platforms == {image.manifests["linux/amd64"]: {"architecture": "amd64", "os": "linux"},
                         image.manifests["linux/arm64"]: {"architecture": "arm64", "os": "linux",
                                                          "variant": "v8"}}
    for arch in ("amd64", "arm64"):
        # skopeo picks by --override-arch; its Digest is the list's, its Layers the platform's
        chosen = registry_http.inspect(f"{repo}:1", "--override-arch", arch)
        assert chosen["Digest"] == image.digest and chosen["Architecture"] == arch
        manifest = json.loads(registry_http.get_manifest(repo, image.manifests[f"linux/{arch}"])[0])
        layers = [layer["digest"] for layer in manifest["layers"]]
        assert chosen["Layers"] == layers
        assert layers[0] == layer_digest(layout)   # the base layers are shared
        config = json.loads(registry_http.get_blob(repo, manifest["config"]["digest"]))
        assert config["architecture"] == arch
        marker = gzip.decompress(registry_http.get_blob(repo, layers[-1]))
        with tarfile.open(fileobj=io.BytesIO(marker)) as tar:
            member = tar.extractfile("platform")
            assert member is not None and member.read() == f"{arch}\n".encode()
    assert image.by_digest("linux/arm64") == (
        f"{registry_http.host}/{repo}@{image.manifests['linux/arm64']}")


def test_two_platform_image_from_the_store(registry_http: RegistryServer, store_root: Path,
                                           busybox_image: str) -> None:
    """The distill store is an OCI layout: its images push as they are or as two platforms."""
    repo = unique_repo("store")
    registry_http.push_layout(store_root, busybox_image, f"{repo}:plain")
    image = push_two_platform_index(registry_http, store_root, busybox_image, f"{repo}:multi")
    plain = json.loads(registry_http.get_manifest(repo, "plain")[0])
    arm64 = json.loads(registry_http.get_manifest(repo, image.manifests["linux/arm64"])[0])
    assert arm64["layers"][:-1] == plain["layers"]
    assert registry_http.inspect(image.by_digest("linux/arm64").split("/", 1)[1])[
        "Architecture"] == "arm64"
