"""Every output of `distill build`, read back by tools that share no code with distill.

One small multi-stage Dockerfile (a busybox build stage that RUNs, a `FROM scratch`
stage and a busybox final stage with COPY --from, USER, ENV, LABEL, EXPOSE, WORKDIR,
ENTRYPOINT) is built into each output: an OCI tar, an OCI directory, a Docker archive,
a local directory and the store itself. skopeo and umoci (Debian) must see the image we
meant: the same files, owners, modes and config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.oci_validate import CONFIG, MANIFEST, validate, validate_layout
from tests.helpers.readback import skopeo_inspect, tree_snapshot, umoci_unpack
from tests.helpers.rootless import owner

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM busybox AS build
RUN mkdir -p /out && echo built > /out/app.txt && chmod 0750 /out/app.txt \\
    && chown 1000:1000 /out/app.txt && ln -s app.txt /out/link
COPY hello.txt /out/hello.txt

FROM scratch AS slim
COPY --from=build /out/ /app/

FROM busybox
RUN rm /bin/vi && mkdir /data && chown 1000:1000 /data
COPY --from=build /out/ /app/
USER app
ENV GREETING=hi
LABEL org.example.k=v
EXPOSE 8080/tcp
WORKDIR /data
ENTRYPOINT ["/bin/sh", "-c", "cat /app/app.txt"]
"""

HELLO = b"hello from the context\n"


def _tool(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def _digest_line(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("sha256:") and len(last) == 71, stdout
    return last


@pytest.fixture(scope="module")
def app_context(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Path:
    ctx = tmp_path_factory.mktemp("outputs-ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_bytes(HELLO)
    os.chmod(ctx / "hello.txt", 0o640)
    return ctx


def check_final_config(config: dict[str, Any]) -> None:
    """The image config of the final stage, as an independent reader reports it."""
    c = config["config"]
    assert c["User"] == "app"
    assert "GREETING=hi" in c["Env"]
    assert any(e.startswith("PATH=") for e in c["Env"])
    assert c["Entrypoint"] == ["/bin/sh", "-c", "cat /app/app.txt"]
    assert not c.get("Cmd")  # ENTRYPOINT without CMD clears the base's CMD
    assert c["Labels"] == {"org.example.k": "v"}
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["WorkingDir"] == "/data"
    assert config["architecture"] and config["os"] == "linux"
    # busybox layer + RUN rm/mkdir + COPY --from; the build stage's layers do not ship.
    assert len(config["rootfs"]["diff_ids"]) == 3


def check_final_rootfs(rootfs: Path) -> None:
    """Files, owners and modes of the final stage's filesystem."""
    snap = tree_snapshot(rootfs)
    app = snap["app/app.txt"]
    assert (app["type"], (app["uid"], app["gid"]), app["mode"]) == \
        ("file", owner(1000, 1000), 0o750)
    assert (rootfs / "app/app.txt").read_bytes() == b"built\n"
    hello = snap["app/hello.txt"]
    assert (hello["type"], (hello["uid"], hello["gid"]), hello["mode"]) == \
        ("file", owner(0, 0), 0o640)
    assert (rootfs / "app/hello.txt").read_bytes() == HELLO
    assert snap["app/link"]["type"] == "symlink" and snap["app/link"]["target"] == "app.txt"
    data = snap["data"]
    assert (data["type"], (data["uid"], data["gid"])) == ("dir", owner(1000, 1000))
    assert "bin/vi" not in snap, "RUN rm /bin/vi must become a whiteout"
    assert snap["bin/busybox"]["type"] == "file" and snap["bin/busybox"]["mode"] == 0o755
    assert snap["tmp"]["mode"] == 0o1777
    assert (rootfs / "etc/passwd").read_text().startswith("root:")
    assert "out" not in snap, "the build stage's /out must not leak into the final image"


def check_manifest_docs(layout: Path, manifest_digest: str) -> dict[str, Any]:
    """Manifest and config blobs validate against the OCI schemas; returns the manifest."""
    raw = (layout / "blobs/sha256" / manifest_digest.split(":")[1]).read_bytes()
    validate(raw, MANIFEST)
    manifest = json.loads(raw)
    config_raw = (layout / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()
    validate(config_raw, CONFIG)
    return manifest


# -- OCI directory --------------------------------------------------------------------

def test_oci_dir_output(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    proc = distill("build", "-t", "outputs/app:1", "--output",
                   f"type=oci,dest={dest},tar=false", str(app_context))
    digest = _digest_line(proc.stdout)

    validate_layout(dest)
    index = json.loads((dest / "index.json").read_text())
    assert len(index["manifests"]) == 1
    entry = index["manifests"][0]
    assert entry["digest"] == digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"

    seen = skopeo_inspect(dest, "1")
    assert seen["manifest_digest"] == digest, "stdout's digest must be the manifest's"
    check_final_config(seen["config"])
    manifest = check_manifest_docs(dest, digest)
    assert [layer["digest"] for layer in manifest["layers"]] == \
        [layer["digest"] for layer in seen["manifest"]["layers"]]

    rootfs = umoci_unpack(dest, "1", tmp_path / "bundle")
    check_final_rootfs(rootfs)
    runtime = json.loads((tmp_path / "bundle/config.json").read_text())
    assert runtime["process"]["user"]["uid"] == 1000
    assert runtime["process"]["args"] == ["/bin/sh", "-c", "cat /app/app.txt"]
    assert runtime["process"]["cwd"] == "/data"
    assert "GREETING=hi" in runtime["process"]["env"]


def test_size_summary_on_stderr(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    proc = distill("build", "--output", f"type=oci,dest={tmp_path / 'l'},tar=false",
                   str(app_context))
    assert "final image" in proc.stderr
    assert "built in" in proc.stderr
    for column in ("stage / step", "size", "time"):
        assert column in proc.stderr
    assert re.search(r"^final image: .* \(.* compressed\)", proc.stderr, re.MULTILINE)
    assert re.search(r"^build  FROM ", proc.stderr, re.MULTILINE)
    assert re.search(r"^stage 2  FROM ", proc.stderr, re.MULTILINE)
    assert "slim" not in proc.stderr, "a stage the target does not need is not built"
    assert "Traceback" not in proc.stderr
    # the digest is the last line of stdout, and nothing but digests goes to stdout
    assert proc.stdout.strip() == _digest_line(proc.stdout)


def test_quiet_prints_only_the_image_id(distill: RunDistill, busybox_image: str,
                                        tmp_path: Path) -> None:
    """As `docker build -q`: `ID=$(distill build --progress quiet .)` gets the id alone, not
    what the RUN steps print (to stdout or stderr); a failing RUN still shows its output."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN echo said-on-stdout; echo said-on-stderr >&2\n")
    proc = distill("build", "--progress", "quiet", "--no-cache", str(tmp_path))
    assert proc.stdout.strip() == _digest_line(proc.stdout)
    assert "said-on" not in proc.stdout + proc.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo why-it-failed; exit 3\n")
    proc = distill("build", "--progress", "quiet", str(tmp_path), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "why-it-failed" in proc.stderr and "exit code: 3" in proc.stderr


# -- OCI tar ----------------------------------------------------------------------------

def test_oci_tar_output(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    proc = distill("build", "-t", "outputs/app:1", "--output", f"type=oci,dest={archive}",
                   str(app_context))
    digest = _digest_line(proc.stdout)
    assert archive.is_file()
    assert not Path(str(archive) + ".tmp").exists()

    extracted = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert {"oci-layout", "index.json"} <= set(names)
        assert all(not n.startswith(("/", "..")) for n in names)
        for member in tar:   # (extractall's filter= is Python 3.11.4+; Debian has 3.11.2)
            if member.isfile() or member.isdir():
                tar.extract(member, extracted, set_attrs=False)
    validate_layout(extracted)

    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"],
                         capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    config = json.loads(_tool("skopeo", "inspect", "--config", f"oci-archive:{archive}"))
    check_final_config(config)

    ref = json.loads((extracted / "index.json").read_text())["manifests"][0]["annotations"][
        "org.opencontainers.image.ref.name"]
    assert ref == "1"
    check_final_rootfs(umoci_unpack(extracted, ref, tmp_path / "bundle"))


# -- Docker archive ---------------------------------------------------------------------

def test_docker_archive_output(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    distill("build", "-t", "outputs/app:1", "--output", f"type=docker,dest={archive}",
            str(app_context))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(manifest) == 1
        entry = manifest[0]
        assert entry["RepoTags"] == ["outputs/app:1"]
        assert entry["Config"] in names
        assert all(layer in names for layer in entry["Layers"])
        config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
    check_final_config(config)

    seen = json.loads(_tool("skopeo", "inspect", f"docker-archive:{archive}"))
    assert seen["Labels"] == {"org.example.k": "v"}
    assert len(seen["Layers"]) == 3
    skopeo_config = json.loads(_tool("skopeo", "inspect", "--config", f"docker-archive:{archive}"))
    check_final_config(skopeo_config)

    # round trip through skopeo into an OCI layout, then umoci: the same filesystem
    layout = tmp_path / "copied"
    _tool("skopeo", "--insecure-policy", "copy", "--quiet", f"docker-archive:{archive}",
          f"oci:{layout}:rt")
    check_final_rootfs(umoci_unpack(layout, "rt", tmp_path / "bundle"))


def test_docker_archive_without_tag_has_no_repotags(
        distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    distill("build", "--output", f"type=docker,dest={archive}", str(app_context))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == []
    _tool("skopeo", "inspect", f"docker-archive:{archive}")


# -- local directory --------------------------------------------------------------------

def test_local_output(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    distill("build", "--output", f"type=local,dest={dest}", str(app_context))
    check_final_rootfs(dest)


def test_local_output_matches_umoci(distill: RunDistill, app_context: Path,
                                    tmp_path: Path) -> None:
    """The local export and umoci's unpack of the OCI export are the same tree."""
    env = {"SOURCE_DATE_EPOCH": "0"}
    local = tmp_path / "local"
    layout = tmp_path / "layout"
    distill("build", "--output", f"type=local,dest={local}", str(app_context), env=env)
    distill("build", "-t", "x:1", "--output", f"type=oci,dest={layout},tar=false",
            str(app_context), env=env)
    rootfs = umoci_unpack(layout, "1", tmp_path / "bundle")

    def comparable(snap: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # the root directory's attributes come from the export target, not the image
        return {k: v for k, v in snap.items() if k != "."}

    assert comparable(tree_snapshot(local)) == comparable(tree_snapshot(rootfs))


# -- a tar of the root filesystem (type=tar, -o -) --------------------------------------

def test_tar_output_is_the_local_tree(distill: RunDistill, app_context: Path,
                                      tmp_path: Path, store_root: Path) -> None:
    """type=tar (buildx's tar exporter) writes the tree type=local writes, as one tar;
    ``-o -`` writes the same tar to stdout (and only it: the digest goes to stderr)."""
    env = {"SOURCE_DATE_EPOCH": "0"}
    local, archive = tmp_path / "local", tmp_path / "rootfs.tar"
    distill("build", "--output", f"type=local,dest={local}", str(app_context), env=env)
    proc = distill("build", "--output", f"type=tar,dest={archive}", str(app_context), env=env)
    digest = _digest_line(proc.stdout)
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(extracted)], check=True)

    def comparable(snap: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in snap.items() if k != "."}

    assert comparable(tree_snapshot(extracted)) == comparable(tree_snapshot(local))
    stdout = subprocess.run([DISTILL, "build", "-q", "-o", "-", str(app_context)],
                            capture_output=True,
                            env={**os.environ, **env, "DISTILL_ROOT": str(store_root)})
    assert stdout.returncode == 0, stdout.stderr
    assert stdout.stdout == archive.read_bytes()
    assert stdout.stderr.decode().split()[-1] == digest


def test_oci_tar_on_stdout_is_only_the_tar(distill: RunDistill, app_context: Path,
                                           tmp_path: Path, store_root: Path) -> None:
    """Regression: with ``type=oci,dest=-`` the image digest was printed after the tar,
    on the same stdout, so ``> image.tar`` gave a tar with trailing garbage."""
    archive = tmp_path / "image.tar"
    env = {"SOURCE_DATE_EPOCH": "0"}
    distill("build", "-q", "-o", f"type=oci,dest={archive}", str(app_context), env=env)
    proc = subprocess.run([DISTILL, "build", "-q", "-o", "type=oci,dest=-",
                           str(app_context)], capture_output=True,
                          env={**os.environ, **env, "DISTILL_ROOT": str(store_root)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == archive.read_bytes()


# -- the store --------------------------------------------------------------------------

def test_tag_without_output_goes_to_store(distill: RunDistill, app_context: Path,
                                          store_root: Path) -> None:
    proc = distill("build", "-t", "outputs/stored:v2", str(app_context))
    digest = _digest_line(proc.stdout)

    listing = distill("images").stdout
    row = next((line for line in listing.splitlines() if "outputs/stored:v2" in line), None)
    assert row is not None, listing
    assert digest[:19] in row

    # the store records names as Docker normalises them, and skopeo reads them so
    seen = skopeo_inspect(store_root, "docker.io/outputs/stored:v2")
    assert seen["manifest_digest"] == digest
    check_final_config(seen["config"])
    index = json.loads((store_root / "index.json").read_text())
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name")
             for m in index["manifests"]]
    assert "docker.io/outputs/stored:v2" in names
    validate_layout(store_root)


def test_tag_without_explicit_tag_is_latest(distill: RunDistill, app_context: Path,
                                            store_root: Path) -> None:
    digest = _digest_line(distill("build", "-t", "outputs/untagged", str(app_context)).stdout)
    assert skopeo_inspect(store_root, "docker.io/outputs/untagged:latest")["manifest_digest"] == digest


def test_images_lists_long_names_in_full(distill: RunDistill, app_context: Path) -> None:
    name = "registry.example.com:5000/some-team/a-rather-long-image-name:v1.2.3-build.45"
    distill("build", "-t", name, str(app_context))
    listing = distill("images", env={"COLUMNS": "80"}).stdout
    assert name in listing, listing


def test_import_then_build_from_it(distill: RunDistill, busybox_tar: Path, store_root: Path,
                                   tmp_path: Path) -> None:
    proc = distill("import", str(busybox_tar), "outputs/imported:v1")
    name, digest = proc.stdout.split()
    assert name == "outputs/imported:v1"
    seen = skopeo_inspect(store_root, "docker.io/outputs/imported:v1")
    assert seen["manifest_digest"] == digest
    assert len(seen["manifest"]["layers"]) == 1

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM outputs/imported:v1\nRUN busybox echo from-import > /marker\n")
    dest = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={dest}", str(ctx))
    assert (dest / "marker").read_text() == "from-import\n"
    assert (dest / "bin/busybox").is_file()


def test_build_context_from_oci_layout(distill: RunDistill, app_context: Path,
                                       tmp_path: Path) -> None:
    layout = tmp_path / "base-layout"
    distill("build", "-t", "outputs/base:7", "--output", f"type=oci,dest={layout},tar=false",
            str(app_context))
    base_layers = skopeo_inspect(layout, "7")["manifest"]["layers"]

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # the base's USER (app) and WORKDIR (/data, owned by app) carry over
    (ctx / "Dockerfile").write_text("FROM base\nRUN cat /app/app.txt > copied && id -u > uid\n")
    out = tmp_path / "out"
    proc = distill("build", "--build-context", f"base=oci-layout://{layout}:7",
                   "-t", "outputs/on-base:1",
                   "--output", f"type=oci,dest={out},tar=false", str(ctx))
    digest = _digest_line(proc.stdout)
    validate_layout(out)
    seen = skopeo_inspect(out, "1")
    assert seen["manifest_digest"] == digest
    assert seen["manifest"]["layers"][:len(base_layers)] == base_layers
    assert len(seen["manifest"]["layers"]) == len(base_layers) + 1
    assert seen["config"]["config"]["User"] == "app"
    rootfs = umoci_unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "data/copied").read_text() == "built\n"
    assert (rootfs / "data/uid").read_text() == "1000\n"
    assert os.stat(rootfs / "data/copied").st_uid == owner(1000, 1000)[0]


def test_target_build_stage(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    proc = distill("build", "--target", "build", "--output", f"type=local,dest={dest}",
                   str(app_context))
    assert "[build " in proc.stderr
    assert "[slim " not in proc.stderr and "[2 " not in proc.stderr, proc.stderr
    assert (dest / "out/app.txt").read_bytes() == b"built\n"
    assert (dest / "out/hello.txt").read_bytes() == HELLO
    assert not (dest / "app").exists()
    assert (dest / "bin/vi").exists(), "the final stage's RUN must not have run"


def test_target_scratch_stage(distill: RunDistill, app_context: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    proc = distill("build", "--target", "slim", "-t", "outputs/slim:1",
                   "--output", f"type=oci,dest={layout},tar=false", str(app_context))
    assert "[2 " not in proc.stderr, proc.stderr
    validate_layout(layout)
    seen = skopeo_inspect(layout, "1")
    assert len(seen["manifest"]["layers"]) == 1
    rootfs = umoci_unpack(layout, "1", tmp_path / "bundle")
    snap = tree_snapshot(rootfs)
    assert {k.split("/")[0] for k in snap if k != "."} == {"app"}
    assert snap["app/app.txt"]["uid"] == owner(1000, 1000)[0]
    assert snap["app/app.txt"]["mode"] == 0o750
    assert (rootfs / "app/hello.txt").read_bytes() == HELLO


# -- reproducibility --------------------------------------------------------------------

def test_reproducible_in_one_store(distill: RunDistill, app_context: Path,
                                   tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "0"}
    first = _digest_line(distill("build", str(app_context), env=env).stdout)
    second = _digest_line(distill("build", str(app_context), env=env).stdout)
    assert first == second
    layout = tmp_path / "layout"
    third = _digest_line(distill("build", "-t", "r:1", "--output",
                                 f"type=oci,dest={layout},tar=false", str(app_context),
                                 env=env).stdout)
    assert third == first
    config = skopeo_inspect(layout, "1")["config"]
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert {h["created"] for h in config["history"]} == {"1970-01-01T00:00:00Z"}


def _fresh_store(distill: RunDistill, busybox_tar: Path, root: Path) -> Path:
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    return root


def test_reproducible_across_stores_copy_only(distill: RunDistill, busybox_tar: Path,
                                              tmp_path: Path) -> None:
    """COPY of a file into / and config only: the same digest in any store, at any time."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /hello.txt\n"
                                    "ENV A=1\nUSER app\n")
    (ctx / "hello.txt").write_bytes(HELLO)
    env = {"SOURCE_DATE_EPOCH": "0"}
    digests = []
    for name in ("r1", "r2"):
        root = _fresh_store(distill, busybox_tar, tmp_path / name)
        digests.append(_digest_line(distill("build", str(ctx), env=env, root=root).stdout))
        time.sleep(1.1)
    assert digests[0] == digests[1]


def test_reproducible_across_stores(distill: RunDistill, busybox_tar: Path, app_context: Path,
                                    tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "0"}
    digests = []
    for name in ("r1", "r2"):
        root = _fresh_store(distill, busybox_tar, tmp_path / name)
        digests.append(_digest_line(distill("build", str(app_context), env=env,
                                            root=root).stdout))
        time.sleep(1.1)  # a build a second later, as on another machine
    assert digests[0] == digests[1]
