"""`distill build --sbom`: the final image's SBOM attached as an OCI 1.1 referrer (an
artifact manifest whose subject is the image), in an OCI layout beside the image and
pushed to a real registry (docker-registry 2.8, which has no referrers API: the
referrers tag ``sha256-<hex>`` lists it). Read back with plain HTTP, skopeo and the
official SPDX 2.3 / CycloneDX 1.5 JSON schemas."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from tests.conftest import RunDistill
from tests.helpers.oci_validate import MANIFEST, validate, validate_layout
from tests.helpers.readback import skopeo_inspect
from tests.helpers.registry import MANIFEST_ACCEPT, RegistryServer, skopeo, unique_repo

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "sbom-schemas"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"


def _validator(schema: str, *others: str) -> Draft7Validator:
    resources = [json.loads((SCHEMAS / name).read_text()) for name in others]
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in resources)
    return Draft7Validator(json.loads((SCHEMAS / schema).read_text()), registry=registry,
                           format_checker=Draft7Validator.FORMAT_CHECKER)


def _check_sbom(data: bytes, artifact_type: str, image_digest: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    if artifact_type == SPDX:
        validator = _validator("spdx-schema.json")
        assert doc["spdxVersion"] == "SPDX-2.3"
        image = doc["packages"][0]
        assert image["primaryPackagePurpose"] == "CONTAINER"
        assert image["versionInfo"] == image_digest
    else:
        validator = _validator("bom-1.5.schema.json", "spdx.schema.json",
                               "jsf-0.82.schema.json")
        assert doc["specVersion"] == "1.5"
        assert doc["metadata"]["component"]["version"] == image_digest
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    return doc


def _check_referrer(manifest: bytes, artifact_type: str, image: dict[str, Any],
                    created: str) -> dict[str, Any]:
    """The referrer manifest's shape; returns it parsed."""
    validate(manifest, MANIFEST)
    doc: dict[str, Any] = json.loads(manifest)
    assert doc["mediaType"] == OCI_MANIFEST and doc["artifactType"] == artifact_type
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json",
                             "digest": EMPTY_DIGEST, "size": 2}
    assert [layer["mediaType"] for layer in doc["layers"]] == [artifact_type]
    assert doc["subject"] == {"mediaType": image["mediaType"], "digest": image["digest"],
                              "size": image["size"]}
    assert doc["annotations"] == {"org.opencontainers.image.created": created}
    return doc


@pytest.fixture
def app(tmp_path: Path, busybox_image: str) -> Path:
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN busybox echo hi > /hi\n")
    return ctx


def _digest(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


@pytest.mark.parametrize(("flag", "artifact_type"), [("--sbom", SPDX),
                                                     ("--sbom=cyclonedx", CYCLONEDX)])
def test_oci_layout_holds_the_image_and_its_sbom(distill: RunDistill, app: Path,
                                                 tmp_path: Path, flag: str,
                                                 artifact_type: str) -> None:
    dest = tmp_path / "layout"
    # `--sbom CONTEXT`: the bare flag never takes the next word (as buildx reads it)
    digest = _digest(distill("build", "-t", "app:1", "--output",
                             f"type=oci,dest={dest},tar=false", flag, str(app)).stdout)
    validate_layout(dest)
    index = json.loads((dest / "index.json").read_text())
    image, referrer = index["manifests"]
    assert image["digest"] == digest and "artifactType" not in image
    assert image["annotations"]["org.opencontainers.image.ref.name"] == "1"
    assert referrer["mediaType"] == OCI_MANIFEST
    assert referrer["artifactType"] == artifact_type
    assert "org.opencontainers.image.ref.name" not in referrer.get("annotations", {})
    manifest = _blob(dest, referrer["digest"])
    assert len(manifest) == referrer["size"]
    config = json.loads(_blob(dest, json.loads(_blob(dest, digest))["config"]["digest"]))
    doc = _check_referrer(manifest, artifact_type, image, config["created"])
    assert referrer["annotations"] == doc["annotations"]
    assert _blob(dest, EMPTY_DIGEST) == b"{}"
    _check_sbom(_blob(dest, doc["layers"][0]["digest"]), artifact_type, digest)
    # the referrer breaks no tool: skopeo still reads the image by its tag
    seen = skopeo_inspect(dest, "1")
    assert seen["manifest_digest"] == digest
    assert seen["config"]["created"] == config["created"]


def test_oci_tar_holds_the_referrer_too(distill: RunDistill, app: Path,
                                       tmp_path: Path) -> None:
    archive = tmp_path / "app.tar"
    digest = _digest(distill("build", "--sbom=true", "-t", "app:2", "--output",
                             f"type=oci,dest={archive}", str(app)).stdout)
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        image, referrer = index["manifests"]
        manifest = tar.extractfile(  # type: ignore[union-attr]
            f"blobs/sha256/{referrer['digest'].removeprefix('sha256:')}").read()
        doc = json.loads(manifest)
        sbom = tar.extractfile(  # type: ignore[union-attr]
            f"blobs/sha256/{doc['layers'][0]['digest'].removeprefix('sha256:')}").read()
    assert image["digest"] == digest == doc["subject"]["digest"]
    _check_sbom(sbom, SPDX, digest)
    raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:2")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest


def test_distill_reads_its_own_sbom_outputs_back(distill: RunDistill, app: Path,
                                                tmp_path: Path) -> None:
    """The referrer beside the image is not taken for a second image: `distill load`
    of the tar, `analyze oci-layout://DIR` with no tag (an outsider found both refused)."""
    archive, layout = tmp_path / "app.tar", tmp_path / "layout"
    digest = _digest(distill("build", "--sbom", "-t", "app:3", "--output",
                             f"type=oci,dest={archive}", str(app)).stdout)
    distill("build", "--sbom", "--output", f"type=oci,dest={layout},tar=false", str(app))
    loaded = distill("load", "-i", str(archive), root=tmp_path / "store")
    assert loaded.stdout.strip().splitlines() == ["Loaded image: app:3"]
    analyzed = json.loads(distill("analyze", "--json", f"oci-layout://{layout}",
                                  root=tmp_path / "store").stdout)
    assert analyzed["digest"] == digest


def test_distroless_sbom_lists_its_packages(distill: RunDistill, distroless_static: str,
                                           tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {distroless_static}\nCOPY Dockerfile /etc/x\n")
    dest = tmp_path / "layout"
    digest = _digest(distill("build", "--sbom", "--output", f"type=oci,dest={dest},tar=false",
                             str(ctx)).stdout)
    _image, referrer = json.loads((dest / "index.json").read_text())["manifests"]
    doc = json.loads(_blob(dest, referrer["digest"]))
    sbom = _check_sbom(_blob(dest, doc["layers"][0]["digest"]), SPDX, digest)
    names = {p["name"] for p in sbom["packages"]}
    assert {"base-files", "tzdata", "netbase"} <= names


@pytest.mark.parametrize("output", [["--output", "type=local,dest={tmp}/out"],
                                    ["--output", "type=docker,dest={tmp}/d.tar"],
                                    ["-t", "sbom-app:1"]])
def test_sbom_needs_an_output_that_carries_it(distill: RunDistill, app: Path,
                                              tmp_path: Path, output: list[str]) -> None:
    args = [a.format(tmp=tmp_path) for a in output]
    proc = distill("build", "--sbom", *args, "--progress", "plain", str(app), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--sbom needs an output that carries it: --output type=oci or a push" \
        in proc.stderr
    assert "#1 " not in proc.stderr and not (tmp_path / "out").exists()  # nothing built


def _get(registry: RegistryServer, path: str, accept: str = MANIFEST_ACCEPT) -> httpx.Response:
    return httpx.get(f"{registry.url}/v2/{path}", headers={"Accept": accept}, timeout=30)


def test_push_lists_the_sbom_under_the_referrers_tag(distill: RunDistill, app: Path,
                                                     registry_http: RegistryServer) -> None:
    repo = unique_repo("sbom")
    ref = registry_http.ref(f"{repo}:v1")
    # docker-registry 2.8 has no referrers API: the fallback is what a client must keep
    proc = distill("build", "--sbom", "--push", "-t", ref, str(app))
    digest = _digest(proc.stdout)
    assert f"(referrer of {digest})" in proc.stderr
    assert _get(registry_http, f"{repo}/referrers/{digest}").status_code == 404

    def referrers() -> list[dict[str, Any]]:
        response = _get(registry_http, f"{repo}/manifests/sha256-{digest[7:]}")
        assert response.status_code == 200, response.text
        index = json.loads(response.content)
        assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
        return list(index["manifests"])

    entries = referrers()
    assert len(entries) == 1 and entries[0]["artifactType"] == SPDX
    image = json.loads(_get(registry_http, f"{repo}/manifests/v1").content)
    config = json.loads(httpx.get(f"{registry_http.url}/v2/{repo}/blobs/"
                                  f"{image['config']['digest']}", timeout=30).content)
    response = _get(registry_http, f"{repo}/manifests/{entries[0]['digest']}")
    assert response.status_code == 200
    manifest = response.content
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == entries[0]["digest"]
    subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(
        _get(registry_http, f"{repo}/manifests/{digest}").content)}
    doc = _check_referrer(manifest, SPDX, subject, config["created"])
    assert entries[0]["annotations"] == doc["annotations"]
    sbom = httpx.get(f"{registry_http.url}/v2/{repo}/blobs/{doc['layers'][0]['digest']}",
                     timeout=30).content
    assert "sha256:" + hashlib.sha256(sbom).hexdigest() == doc["layers"][0]["digest"]
    _check_sbom(sbom, SPDX, digest)

    # the same build pushed again (a cache hit, the same image): no second entry
    again = distill("build", "--sbom", "--push", "-t", ref, str(app))
    assert _digest(again.stdout) == digest
    assert referrers() == entries
    # a CycloneDX SBOM of the same image is a second referrer, listed beside the first
    distill("build", "--sbom=cyclonedx", "--push", "-t", ref, str(app))
    assert [e["artifactType"] for e in referrers()] == [SPDX, CYCLONEDX]
    # the referrers break no tool: skopeo still reads the image
    seen = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert seen["Digest"] == digest
