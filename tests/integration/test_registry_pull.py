"""Pulling from real registries (docker-registry on 127.0.0.1): FROM, COPY --from and
RUN --mount from= images, by tag and digest, anonymous over HTTP, basic auth over TLS,
bearer tokens; names normalised as Docker normalises them; missing bases reported at once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from distill.oci.reference import normalize_name
from tests.conftest import RunDistill
from tests.helpers.registry import RegistryServer, push_two_platform_index, unique_repo

pytestmark = pytest.mark.integration


def _context(tmp_path: Path, dockerfile: str, name: str = "ctx") -> Path:
    ctx = tmp_path / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _digest_line(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def _stored_names(root: Path) -> dict[str, str]:
    index = json.loads((root / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index["manifests"]}


def assert_blobs_verified(root: Path) -> None:
    """Every blob hashes to its name, and no download is left in the store's temp dirs."""
    for path in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path.name
    leftovers = [p for p in (root / "tmp").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def pushed_busybox(busybox_image: str, store_root: Path, registry_http: RegistryServer
                   ) -> tuple[str, str]:
    """busybox in registry_http as REPO:1; returns (reference, manifest digest)."""
    repo = unique_repo("busybox")
    ref = registry_http.push_layout(store_root, normalize_name(busybox_image), f"{repo}:1")
    digest = registry_http.inspect(f"{repo}:1")["Digest"]
    return ref, digest


def test_from_a_registry_by_tag(distill: RunDistill, pushed_busybox: tuple[str, str],
                                tmp_path: Path) -> None:
    ref, digest = pushed_busybox
    root = tmp_path / "store"
    ctx = _context(tmp_path, f"FROM {ref}\nRUN busybox echo pulled > /marker\n")
    dest = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={dest}", str(ctx), root=root)
    assert (dest / "marker").read_text() == "pulled\n"
    assert (dest / "bin/busybox").is_file()
    # tagged in the store under its normalised name, at the registry's own digest
    assert _stored_names(root)[ref] == digest
    assert_blobs_verified(root)
    # a second build uses the stored image: no registry needed (the image is still named)
    proc = distill("build", str(ctx), root=root)
    assert "pulling" not in proc.stderr


def test_pull_by_digest_and_from_by_digest(distill: RunDistill,
                                          pushed_busybox: tuple[str, str],
                                          tmp_path: Path) -> None:
    ref, digest = pushed_busybox
    root = tmp_path / "store"
    name = ref.rsplit(":", 1)[0]
    proc = distill("pull", f"{name}@{digest}", root=root)
    assert f"Digest: {digest}" in proc.stderr
    ctx = _context(tmp_path, f"FROM {name}@{digest}\nRUN busybox true\n")
    distill("build", str(ctx), root=root)
    wrong = "sha256:" + "0" * 64
    proc = distill("pull", f"{name}@{wrong}", root=root, check=False)
    assert proc.returncode == 1
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_copy_from_and_mount_from_pull_too(distill: RunDistill,
                                           pushed_busybox: tuple[str, str],
                                           tmp_path: Path) -> None:
    ref, _ = pushed_busybox
    root = tmp_path / "store"
    ctx = _context(tmp_path, (
        "FROM scratch\n"
        f"COPY --from={ref} /bin/busybox /busybox\n"
        f"RUN --mount=from={ref},target=/src [\"/busybox\", \"cp\", \"/src/bin/busybox\", "
        "\"/copied\"]\n"))
    dest = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={dest}", str(ctx), root=root)
    assert (dest / "busybox").read_bytes() == (dest / "copied").read_bytes()


def test_short_names_find_what_was_tagged_in_full(distill: RunDistill, busybox_tar: Path,
                                                  tmp_path: Path) -> None:
    """After -t docker.io/library/x:1, every spelling Docker accepts finds it locally
    (docker.io is unreachable here, so a lookup that missed would fail to pull)."""
    root = tmp_path / "store"
    distill("import", str(busybox_tar), "docker.io/library/normal:1", root=root)
    for spelling in ("normal:1", "library/normal:1", "docker.io/normal:1",
                     "index.docker.io/library/normal:1", "docker.io/library/normal:1"):
        ctx = _context(tmp_path, f"FROM {spelling}\nRUN busybox true\n",
                       name=f"ctx-{hashlib.sha256(spelling.encode()).hexdigest()[:8]}")
        distill("build", str(ctx), root=root)
    assert "normal:1" in distill("images", root=root).stdout


def test_missing_bases_are_reported_together_before_any_step(
        distill: RunDistill, registry_http: RegistryServer, busybox_image: str,
        tmp_path: Path) -> None:
    missing_a = registry_http.ref(unique_repo("absent") + ":1")
    missing_b = registry_http.ref(unique_repo("absent") + ":2")
    ctx = _context(tmp_path, (
        f"FROM {busybox_image} AS first\nRUN busybox echo ran > /ran\n"
        f"FROM {missing_a} AS second\nRUN true\n"
        f"FROM {missing_b}\nCOPY --from=first /ran /ran\nCOPY --from=second / /\n"))
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "2 images could not be found" in proc.stderr
    assert missing_a in proc.stderr and missing_b in proc.stderr
    assert "Dockerfile:3" in proc.stderr and "Dockerfile:5" in proc.stderr
    assert "RUN busybox echo ran" not in proc.stderr     # no step ran
    assert "Traceback" not in proc.stderr


def test_pull_flag_resolves_tags_again(distill: RunDistill, busybox_image: str,
                                       store_root: Path, registry_http: RegistryServer,
                                       tmp_path: Path) -> None:
    repo = unique_repo("moving")
    # version 1 of the tag
    registry_http.push_layout(store_root, normalize_name(busybox_image), f"{repo}:v")
    root = tmp_path / "store"
    ref = registry_http.ref(f"{repo}:v")
    distill("pull", ref, root=root)
    first = _stored_names(root)[ref]
    # version 2: another image under the same tag
    ctx2 = _context(tmp_path, f"FROM {busybox_image}\nRUN busybox echo two > /two\n", "v2")
    distill("build", "-t", "moving:v2", str(ctx2))
    registry_http.push_layout(store_root, normalize_name("moving:v2"), f"{repo}:v")
    second = registry_http.inspect(f"{repo}:v")["Digest"]
    assert second != first
    ctx = _context(tmp_path, f"FROM {ref}\nRUN busybox ls /two || busybox true\n")
    distill("build", str(ctx), root=root)
    assert _stored_names(root)[ref] == first          # without --pull: the stored one
    distill("build", "--pull", str(ctx), root=root)
    assert _stored_names(root)[ref] == second         # --pull: the registry's


# -- auth and TLS ---------------------------------------------------------------------------

def _settings(tmp_path: Path, registry: RegistryServer, **extra: str) -> dict[str, str]:
    """DISTILL_REGISTRIES trusting the registry's CA, DOCKER_CONFIG empty."""
    conf = tmp_path / "registries.toml"
    if registry.ca_path:
        conf.write_text(f'[registry."{registry.host}"]\nca = ["{registry.ca_path}"]\n')
    else:
        conf.write_text("")
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir(exist_ok=True)
    return {"DISTILL_REGISTRIES": str(conf), "DOCKER_CONFIG": str(docker_config), **extra}


def test_basic_auth_over_tls(distill: RunDistill, busybox_image: str, store_root: Path,
                             registry_tls_basic: RegistryServer, tmp_path: Path) -> None:
    reg = registry_tls_basic
    repo = unique_repo("private")
    ref = reg.push_layout(store_root, normalize_name(busybox_image), f"{repo}:1")
    env = _settings(tmp_path, reg)
    root = tmp_path / "store"

    # not logged in: 401, said in one line with what to do
    proc = distill("pull", ref, root=root, env=env, check=False)
    assert proc.returncode == 1
    assert reg.host in proc.stderr and "401" in proc.stderr
    assert f"distill login {reg.host}" in proc.stderr

    # a wrong password is refused at login, and nothing is stored
    proc = distill("login", reg.host, "-u", reg.username or "", "--password-stdin",
                   root=root, env=env, check=False, input="wrong\n")
    assert proc.returncode == 1, proc.stderr
    assert not (Path(env["DOCKER_CONFIG"]) / "config.json").exists()

    proc = distill("login", reg.host, "-u", reg.username or "", "--password-stdin",
                   root=root, env=env, input=f"{reg.password}\n")
    assert "Login Succeeded" in proc.stdout
    config = json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())
    assert reg.host in config["auths"]
    distill("pull", ref, root=root, env=env)
    assert ref in _stored_names(root)

    distill("logout", reg.host, root=root, env=env)
    assert distill("pull", ref, root=tmp_path / "store2", env=env, check=False).returncode == 1


def test_tls_is_verified(distill: RunDistill, registry_tls_basic: RegistryServer,
                         tmp_path: Path) -> None:
    """Without the CA, the registry's certificate is not trusted: a clear error."""
    env = {"DISTILL_REGISTRIES": str(tmp_path / "none.toml"),
           "DOCKER_CONFIG": str(tmp_path)}
    (tmp_path / "none.toml").write_text("")
    proc = distill("pull", registry_tls_basic.ref("x:1"), root=tmp_path / "s", env=env,
                   check=False)
    assert proc.returncode == 1
    assert "certificate" in proc.stderr.lower() and "ca = " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bearer_tokens_are_fetched_once_per_scope(
        distill: RunDistill, busybox_image: str, store_root: Path,
        registry_token: RegistryServer, tmp_path: Path) -> None:
    reg = registry_token
    assert reg.token is not None
    repo = unique_repo("tokened")
    ref = reg.push_layout(store_root, normalize_name(busybox_image), f"{repo}:1")
    reg.token.clear_requests()
    root = tmp_path / "store"
    env = _settings(tmp_path, reg)
    distill("pull", ref, root=root, env=env)            # anonymous pull is granted
    scopes = [r.scope for r in reg.token.token_requests]
    assert scopes == [f"repository:{repo}:pull"], reg.token.token_requests
    assert ref in _stored_names(root)


def test_a_single_platform_image_of_another_platform_is_refused(
        distill: RunDistill, pushed_busybox: tuple[str, str], tmp_path: Path) -> None:
    """busybox here is amd64 only: building --platform linux/arm64 on it would label
    amd64 binaries arm64 (found by a new user); it is refused before any layer moves."""
    ref, _ = pushed_busybox
    ctx = _context(tmp_path, f"FROM {ref}\nRUN busybox true\n")
    proc = distill("build", "--platform", "linux/arm64", str(ctx), root=tmp_path / "s",
                   check=False)
    assert proc.returncode == 1
    assert "is an image for linux/amd64, not linux/arm64" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the same image already in the store, asked for another platform
    root = tmp_path / "s2"
    distill("pull", ref, root=root)
    proc = distill("build", "--platform", "linux/arm64", str(ctx), root=root, check=False)
    assert proc.returncode == 1 and "linux/arm64" in proc.stderr


@pytest.mark.parametrize("value", ["bogus", "linux/bogus", "plan10/amd64", "linux//v7", ""])
def test_unknown_platforms_are_usage_errors(distill: RunDistill, value: str,
                                            tmp_path: Path) -> None:
    proc = distill("pull", "--platform", value, "busybox", root=tmp_path / "s", check=False)
    if value == "":
        assert proc.returncode in (1, 2)      # empty means the default: docker.io fails
    else:
        assert proc.returncode == 2 and "invalid platform" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_store_that_cannot_be_made_is_a_clear_error(distill: RunDistill,
                                                      tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for root in (afile, afile / "sub"):
        proc = distill("images", root=root, check=False)
        assert proc.returncode == 1, proc.stderr
        assert "cannot use" in proc.stderr and "Traceback" not in proc.stderr


def _push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    location = start.headers["location"]
    sep = "&" if "?" in location else "?"
    done = client.put(f"{location}{sep}digest={digest}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def test_a_layer_that_lies_about_its_diff_id_is_refused_when_unpacked(
        distill: RunDistill, pushed_busybox: tuple[str, str], registry_http: RegistryServer,
        tmp_path: Path) -> None:
    """The pull verifies every blob's digest; the diff_id is computed when the layer is
    first unpacked (as containerd does), and a config's false claim is refused there."""
    ref, _ = pushed_busybox
    repo = ref.split("/", 1)[1].split(":")[0]
    manifest = json.loads(registry_http.get_manifest(repo, "1")[0])
    config = json.loads(registry_http.get_blob(repo, manifest["config"]["digest"]))
    config["rootfs"]["diff_ids"] = ["sha256:" + "e" * 64]
    liar = unique_repo("liar")
    with registry_http.client() as client:
        layer = manifest["layers"][0]
        _push_blob(client, liar, registry_http.get_blob(repo, layer["digest"]))
        cdata = json.dumps(config).encode()
        manifest["config"].update(digest=_push_blob(client, liar, cdata), size=len(cdata))
        put = client.put(f"/v2/{liar}/manifests/1", content=json.dumps(manifest).encode(),
                         headers={"Content-Type": manifest["mediaType"]})
        assert put.status_code == 201, put.text
    root = tmp_path / "store"
    ctx = _context(tmp_path, f"FROM {registry_http.ref(liar + ':1')}\nRUN busybox true\n")
    proc = distill("build", str(ctx), root=root, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "unpacks to" in proc.stderr and "e" * 64 in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((root / "snapshots").iterdir())     # nothing unpacked under its claim
    assert_blobs_verified(root)


def test_the_debian_base_as_a_two_platform_index_pushed_by_skopeo(
        distill: RunDistill, debian_image: str, store_root: Path,
        registry_http: RegistryServer, tmp_path: Path) -> None:
    """Interop the other way: skopeo pushes the Debian base (made by `distill base debian`)
    as a two-platform OCI index; distill builds FROM it, choosing the platform."""
    image = push_two_platform_index(registry_http, store_root, normalize_name(debian_image),
                                    f"{unique_repo('debian2p')}:bookworm")
    root = tmp_path / "store"
    ctx = _context(tmp_path, f"FROM {image.reference}\n"
                             "RUN cat /platform > /seen && dpkg --print-architecture >> /seen\n")
    dest = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={dest}", str(ctx), root=root)
    assert (dest / "seen").read_text() == "amd64\namd64\n"
    assert _stored_names(root)[image.reference] == image.manifests["linux/amd64"]
    # the arm64 image, for a stage that runs nothing
    ctx_arm = _context(tmp_path, f"FROM --platform=linux/arm64 {image.reference}\n", "arm")
    out_arm = tmp_path / "out-arm"
    distill("build", "--output", f"type=local,dest={out_arm}", str(ctx_arm), root=root)
    assert (out_arm / "platform").read_text() == "arm64\n"
    assert (out_arm / "etc/debian_version").is_file()
