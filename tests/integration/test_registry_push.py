"""Pushing to real registries (docker-registry on 127.0.0.1), read back by skopeo, umoci
and Docker's engine: --push, --output type=registry / type=image,push=true, distill push;
blobs the registry has are skipped, blobs of another repository are cross-mounted,
chunked uploads; auth over TLS and tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.oci.digest import Digest
from distill.oci.reference import normalize_reference
from distill.registry.hosts import RegistryHosts
from distill.registry.pull import Registries
from distill.registry.push import push
from distill.store.store import Store
from tests.conftest import RunDistill
from tests.helpers.dockerd import private_dockerd
from tests.helpers.readback import umoci_unpack
from tests.helpers.registry import FaultProxy, RegistryServer, skopeo, unique_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def app(tmp_path: Path, busybox_image: str) -> Path:
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "payload.txt").write_text("pushed payload\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY payload.txt /payload.txt\n"
        "RUN busybox echo built > /marker\nCMD [\"/bin/busybox\", \"cat\", \"/marker\"]\n")
    return ctx


def _digest(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def _read_back(registry: RegistryServer, repo_tag: str, tmp_path: Path) -> Path:
    """skopeo copies the pushed image to a layout; umoci unpacks it; returns the rootfs."""
    layout = registry.pull_to_layout(repo_tag, tmp_path / "readback", "img")
    return umoci_unpack(layout, "img", tmp_path / "bundle")


def test_build_push_is_read_back_by_skopeo_and_umoci(distill: RunDistill, app: Path,
                                                     registry_http: RegistryServer,
                                                     tmp_path: Path) -> None:
    repo = unique_repo("pushed")
    ref = registry_http.ref(f"{repo}:1")
    proc = distill("build", "-t", ref, "--push", str(app))
    digest = _digest(proc.stdout)
    assert f"pushed {ref}@{digest}" in proc.stderr
    assert registry_http.inspect(f"{repo}:1")["Digest"] == digest
    rootfs = _read_back(registry_http, f"{repo}:1", tmp_path)
    assert (rootfs / "marker").read_text() == "built\n"
    assert (rootfs / "payload.txt").read_text() == "pushed payload\n"


@pytest.mark.parametrize("spec", ["type=registry,name={ref}", "type=image,name={ref},push=true",
                                  'type=image,"name={ref},{ref2}",push=true'])
def test_output_specs_that_push(distill: RunDistill, app: Path, registry_http: RegistryServer,
                                spec: str) -> None:
    repo = unique_repo("out")
    ref, ref2 = registry_http.ref(f"{repo}:a"), registry_http.ref(f"{repo}:b")
    digest = _digest(distill("build", "--output", spec.format(ref=ref, ref2=ref2),
                             str(app)).stdout)
    assert registry_http.inspect(f"{repo}:a")["Digest"] == digest
    if "ref2" in spec:
        assert registry_http.inspect(f"{repo}:b")["Digest"] == digest


def test_push_needs_a_name(distill: RunDistill, app: Path) -> None:
    proc = distill("build", "--push", str(app), check=False)
    assert proc.returncode == 2 and "needs a name" in proc.stderr


def test_distill_push_skips_and_mounts_blobs(distill: RunDistill, app: Path,
                                             registry_http: RegistryServer,
                                             fault_proxy: FaultProxy) -> None:
    """Through the proxy, to see the requests: a second push sends no blob; a push to
    another repository of the same registry mounts every blob instead of uploading it."""
    repo_a, repo_b = unique_repo("first"), unique_repo("second")
    name_a, name_b = fault_proxy.ref(f"{repo_a}:1"), fault_proxy.ref(f"{repo_b}:1")
    digest = _digest(distill("build", "-t", name_a, "-t", name_b, str(app)).stdout)
    proc = distill("push", name_a)
    assert proc.stdout.strip().startswith(f"1: digest: {digest} size: ")
    uploads = [r for r in fault_proxy.requests if r.method in ("PUT", "PATCH")
               and "/blobs/uploads/" in r.path]
    assert len(uploads) >= 3          # config, busybox layer, COPY layer, RUN layer

    fault_proxy.clear()
    distill("push", name_a)
    again = [r for r in fault_proxy.requests if "/blobs/uploads/" in r.path]
    assert again == [], again          # every blob answered HEAD 200
    assert any(r.method == "HEAD" and r.status == 200 for r in fault_proxy.requests)

    fault_proxy.clear()
    distill("push", name_b)
    posts = [r for r in fault_proxy.requests if r.method == "POST"]
    assert posts and all("mount=" in r.path and f"from={repo_a}" in r.path for r in posts)
    assert all(r.status == 201 for r in posts), posts
    assert not [r for r in fault_proxy.requests if r.method in ("PUT", "PATCH")
                and "/blobs/" in r.path]
    assert registry_http.inspect(f"{repo_b}:1")["Digest"] == digest


def test_chunked_upload(distill: RunDistill, app: Path, store_root: Path,
                        fresh_registry: RegistryServer, tmp_path: Path) -> None:
    """Blobs over the monolithic limit go up in PATCH chunks closed by a PUT (an empty
    registry: nothing to skip or mount)."""
    registry_http = fresh_registry
    repo = unique_repo("chunked")
    digest = _digest(distill("build", "-t", "chunked:1", str(app)).stdout)
    store = Store(store_root)
    with Registries(RegistryHosts()) as registries:
        pushed = push(store, registries, Digest(digest),
                      normalize_reference(registry_http.ref(f"{repo}:1")),
                      monolithic_max=1024, chunk_size=64 << 10)
    assert str(pushed.manifest.digest) == digest
    assert pushed.uploaded >= 2
    rootfs = _read_back(registry_http, f"{repo}:1", tmp_path)
    assert (rootfs / "bin" / "busybox").is_file()


def test_push_with_basic_auth_over_tls(distill: RunDistill, app: Path,
                                       registry_tls_basic: RegistryServer,
                                       tmp_path: Path) -> None:
    reg = registry_tls_basic
    conf = tmp_path / "registries.toml"
    conf.write_text(f'[registry."{reg.host}"]\nca = ["{reg.ca_path}"]\n')
    env = {"DISTILL_REGISTRIES": str(conf), "DOCKER_CONFIG": str(tmp_path / "docker")}
    repo = unique_repo("tls")
    ref = reg.ref(f"{repo}:1")
    proc = distill("build", "-t", ref, "--push", str(app), env=env, check=False)
    assert proc.returncode == 1 and "401" in proc.stderr and "distill login" in proc.stderr
    distill("login", reg.host, "-u", reg.username or "", "--password-stdin", env=env,
            input=reg.password)
    digest = _digest(distill("build", "-t", ref, "--push", str(app), env=env).stdout)
    assert reg.inspect(f"{repo}:1")["Digest"] == digest


def test_push_with_tokens(distill: RunDistill, app: Path, registry_token: RegistryServer,
                          tmp_path: Path) -> None:
    reg = registry_token
    assert reg.token is not None
    env = {"DISTILL_REGISTRIES": str(tmp_path / "r.toml"), "DOCKER_CONFIG": str(tmp_path / "d")}
    (tmp_path / "r.toml").write_text("")
    repo = unique_repo("tokpush")
    ref = reg.ref(f"{repo}:1")
    proc = distill("build", "-t", ref, "--push", str(app), env=env, check=False)
    assert proc.returncode == 1, proc.stderr     # anonymous: pull only
    assert reg.host in proc.stderr and "Traceback" not in proc.stderr
    distill("login", reg.host, "-u", reg.username or "", "--password-stdin", env=env,
            input=reg.password)
    reg.token.clear_requests()
    digest = _digest(distill("build", "-t", ref, "--push", str(app), env=env).stdout)
    assert reg.inspect(f"{repo}:1")["Digest"] == digest
    asked = [r.scope for r in reg.token.token_requests]
    assert asked.count(f"repository:{repo}:pull,push") == 1, asked   # one token, reused


def test_docker_engine_pulls_and_runs_what_distill_pushed(
        distill: RunDistill, app: Path, registry_http: RegistryServer, tmp_path: Path) -> None:
    repo = unique_repo("docker")
    ref = registry_http.ref(f"{repo}:1")
    distill("build", "-t", ref, "--push", str(app))
    with private_dockerd(tmp_path / "docker") as docker:
        docker("pull", ref)            # 127.0.0.0/8 is an insecure registry to Docker
        out = docker("run", "--rm", "--network=host", ref).stdout
    assert out == "built\n"


def test_pushed_manifest_is_the_built_one(distill: RunDistill, app: Path,
                                          registry_http: RegistryServer) -> None:
    repo = unique_repo("raw")
    ref = registry_http.ref(f"{repo}:1")
    digest = _digest(distill("build", "-t", ref, "--push", str(app)).stdout)
    raw = json.loads(skopeo("inspect", "--raw", *registry_http.skopeo_args(""),
                            f"docker://{ref}"))
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert registry_http.inspect(f"{repo}:1")["Digest"] == digest


def test_base_output_type_registry_pushes(distill: RunDistill, distroless_static: str,
                                          registry_http: RegistryServer) -> None:
    """Regression: `distill base -o type=registry` tagged the image in the store and
    pushed nothing (only `distill build` pushed), with no error."""
    repo = unique_repo("base")
    ref = registry_http.ref(f"{repo}:1")
    proc = distill("base", "static:nonroot", "--output", f"type=registry,name={ref}")
    digest = proc.stdout.split()[-1]
    assert f"pushed {ref}@{digest}" in proc.stderr
    assert registry_http.inspect(f"{repo}:1")["Digest"] == digest
