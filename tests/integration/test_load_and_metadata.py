"""distill load (docker load's inputs), import refusing them, and what buildx's result
flags hand on: -q, --iidfile, --metadata-file, --load.

Archives come from distill itself (type=docker, type=oci), from Docker's engine (a real
``docker save``, when a private dockerd starts here) and from the tests (a docker-save
shaped tar built by hand, and hostile variants of both shapes: every one is refused with
an ``error:`` line, and leaves nothing in the store's blobs).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.dockerd import Docker, private_dockerd
from tests.helpers.readback import skopeo_inspect

pytestmark = pytest.mark.integration

DOCKERFILE = "FROM busybox\nRUN echo loaded > /hi\n"
NAME = "docker.io/library/loadtest:1"
#: Builds of the same context get the same digest (image times clamp to it).
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 1, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "error: " in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    return proc.stderr


def _store_is_empty(root: Path) -> None:
    """Nothing of a refused archive reached the store."""
    assert not list((root / "blobs" / "sha256").iterdir())
    assert not list((root / "layers").iterdir())
    assert json.loads((root / "index.json").read_text())["manifests"] == []


def _tagged(root: Path) -> dict[str, str]:
    """name -> manifest digest, as the store's index.json says."""
    index = json.loads((root / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index["manifests"]}


# -- fixtures: the image, as distill writes it ---------------------------------------------

@dataclass(frozen=True)
class Built:
    digest: str        # manifest digest distill printed
    docker_tar: Path   # --output type=docker
    oci_tar: Path      # --output type=oci


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Path:
    ctx = tmp_path_factory.mktemp("load-ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


@pytest.fixture(scope="module")
def built(distill: RunDistill, context: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("load-out")
    digests = []
    for kind in ("docker", "oci"):
        proc = distill("build", "-q", "-t", "loadtest:1", "--output",
                       f"type={kind},dest={out / kind}.tar", str(context), env=EPOCH)
        digests.append(proc.stdout.strip())
    assert digests[0] == digests[1]
    return Built(digests[0], out / "docker.tar", out / "oci.tar")


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _write_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@dataclass
class Legacy:
    """A tar shaped as `docker save` (Docker <= 24) writes it, made from distill's blobs."""

    config: bytes
    layers: list[bytes]                     # uncompressed layer tars
    entries: list[tarfile.TarInfo | tuple[str, bytes]]

    @classmethod
    def of(cls, built: Built) -> Legacy:
        blobs = {name.rsplit("/", 1)[-1]: data for name, data in _members(built.oci_tar).items()
                 if name.startswith("blobs/")}
        manifest = json.loads(blobs[built.digest.split(":")[1]])
        config = blobs[manifest["config"]["digest"].split(":")[1]]
        layers = [gzip.decompress(blobs[x["digest"].split(":")[1]]) for x in manifest["layers"]]
        return cls(config, layers, [])

    def write(self, path: Path, *, second_image: bool = True,
              tags: list[str] | None = None) -> Path:
        """Image 1 (loadtest:legacy) and, sharing its first layer and reaching its second
        through a symlink (as Docker writes a layer two images share), image 2."""
        ids = [hashlib.sha256(f"v1-{i}".encode()).hexdigest() for i in range(3)]
        config_name = f"{_digest(self.config).split(':')[1]}.json"
        entries: list[tarfile.TarInfo | tuple[str, bytes]] = [(config_name, self.config)]
        for i, layer in enumerate(self.layers):
            entries += [(f"{ids[i]}/VERSION", b"1.0"), (f"{ids[i]}/json", b"{}"),
                        (f"{ids[i]}/layer.tar", layer)]
        manifest = [{"Config": config_name,
                     "RepoTags": ["loadtest:legacy"] if tags is None else tags,
                     "Layers": [f"{ids[0]}/layer.tar", f"{ids[1]}/layer.tar"]}]
        if second_image:
            other = json.loads(self.config)
            other.setdefault("config", {})["Labels"] = {"second": "yes"}
            other_bytes = json.dumps(other).encode()
            other_name = f"{_digest(other_bytes).split(':')[1]}.json"
            entries += [(other_name, other_bytes),
                        _link(f"{ids[2]}/layer.tar", f"../{ids[1]}/layer.tar")]
            manifest.append({"Config": other_name, "RepoTags": ["example.com/team/other:2"],
                             "Layers": [f"{ids[0]}/layer.tar", f"{ids[2]}/layer.tar"]})
        entries += [("manifest.json", json.dumps(manifest).encode()), *self.entries]
        return _write_tar(path, entries)


# -- round trips ----------------------------------------------------------------------------

def test_docker_output_round_trips(distill: RunDistill, built: Built, tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = distill("load", "-i", str(built.docker_tar), root=root)
    assert proc.stdout == "Loaded image: loadtest:1\n"
    assert _tagged(root) == {NAME: built.digest}
    assert skopeo_inspect(root, NAME)["manifest_digest"] == built.digest
    # stdin, as `docker load < FILE`; loading again changes nothing
    with open(built.docker_tar, "rb") as f:
        again = subprocess.run([DISTILL, "load"], stdin=f, capture_output=True, text=True,
                               env={**os.environ, "DISTILL_ROOT": str(root)}, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "Loaded image: loadtest:1\n"
    assert _tagged(root) == {NAME: built.digest}


def test_oci_tar_loads(distill: RunDistill, built: Built, tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert distill("load", "-i", str(built.oci_tar), root=root).stdout == \
        "Loaded image: loadtest:1\n"
    assert _tagged(root) == {NAME: built.digest}


def test_a_gzipped_archive_loads(distill: RunDistill, built: Built, tmp_path: Path) -> None:
    packed = tmp_path / "docker.tar.gz"
    packed.write_bytes(gzip.compress(built.docker_tar.read_bytes(), compresslevel=1))
    root = tmp_path / "store"
    distill("load", "-q", "-i", str(packed), root=root)
    assert _tagged(root) == {NAME: built.digest}


def test_docker_save_shape_loads(distill: RunDistill, built: Built, tmp_path: Path) -> None:
    """manifest.json alone: layer.tar stored uncompressed (its digest is its diff_id), a
    layer reached through Docker's symlink, both images named, the config kept."""
    legacy = Legacy.of(built)
    archive = legacy.write(tmp_path / "saved.tar")
    digests = []
    for attempt in ("a", "b"):
        root = tmp_path / f"store-{attempt}"
        proc = distill("load", "-i", str(archive), root=root)
        assert proc.stdout == ("Loaded image: loadtest:legacy\n"
                               "Loaded image: example.com/team/other:2\n")
        tagged = _tagged(root)
        assert set(tagged) == {"docker.io/library/loadtest:legacy", "example.com/team/other:2"}
        info = skopeo_inspect(root, "docker.io/library/loadtest:legacy")
        assert info["manifest_digest"] == tagged["docker.io/library/loadtest:legacy"]
        assert info["manifest"]["config"]["digest"] == _digest(legacy.config)
        assert [x["digest"] for x in info["manifest"]["layers"]] == \
            [_digest(layer) for layer in legacy.layers] == info["config"]["rootfs"]["diff_ids"]
        assert {x["mediaType"] for x in info["manifest"]["layers"]} == \
            {"application/vnd.oci.image.layer.v1.tar"}
        digests.append(tagged)
    assert digests[0] == digests[1], "the same archive loads to the same digests"


def test_a_loaded_image_builds(distill: RunDistill, built: Built, tmp_path: Path) -> None:
    root = tmp_path / "store"
    distill("load", "-i", str(Legacy.of(built).write(tmp_path / "saved.tar")), root=root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM example.com/team/other:2\nRUN cat /hi > /seen\n")
    out = tmp_path / "out"
    distill("build", "-q", "--output", f"type=local,dest={out}", str(ctx), root=root)
    assert (out / "seen").read_text() == "loaded\n"


def test_an_untagged_image_loads_by_id(distill: RunDistill, built: Built,
                                       tmp_path: Path) -> None:
    root = tmp_path / "store"
    archive = Legacy.of(built).write(tmp_path / "saved.tar", second_image=False, tags=[])
    # RepoTags [] (Docker writes null for an image saved by ID)
    proc = distill("load", "-i", str(archive), root=root)
    assert proc.stdout.startswith("Loaded image ID: sha256:"), proc.stdout
    assert "no name" in proc.stderr
    assert _tagged(root) == {}


# -- Docker's engine --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Iterator[Docker]:
    # Docker's engine is one of the test suite's real parts (docker.io is in make's apt
    # packages): if it cannot start, these tests fail rather than skip
    engine = private_dockerd(tmp_path_factory.mktemp("load-dockerd"))
    docker = engine.__enter__()
    try:
        yield docker
    finally:
        engine.__exit__(None, None, None)


def test_a_real_docker_save_loads(distill: RunDistill, built: Built, dockerd: Docker,
                                  context: Path, tmp_path: Path) -> None:
    """What Docker's engine writes: its image ID is the config digest distill keeps; a
    layer shared as another image's middle layer is a symlink in the tar."""
    derived = tmp_path / "derived"
    derived.mkdir()
    (derived / "Dockerfile").write_text(DOCKERFILE + "COPY f /f\n")   # loadtest:1's RUN, cached
    (derived / "f").write_text("derived\n")
    derived_tar = tmp_path / "derived.tar"
    distill("build", "-q", "-t", "derived:1", "--output", f"type=docker,dest={derived_tar}",
            str(derived), env=EPOCH)
    dockerd("load", "-i", str(built.docker_tar))
    dockerd("load", "-i", str(derived_tar))
    dockerd("tag", "loadtest:1", "example.com/team/app:2")
    saved = tmp_path / "saved.tar"
    dockerd("save", "-o", str(saved), "loadtest:1", "example.com/team/app:2", "derived:1")
    with tarfile.open(saved) as tar:
        assert any(m.issym() for m in tar), "Docker writes a shared layer as a symlink"
    root = tmp_path / "store"
    loaded = distill("load", "-i", str(saved), root=root).stdout.splitlines()
    assert sorted(loaded) == ["Loaded image: derived:1", "Loaded image: example.com/team/app:2",
                              "Loaded image: loadtest:1"]
    for name, docker_name in ((NAME, "loadtest:1"), ("docker.io/library/derived:1", "derived:1")):
        image_id = dockerd("image", "inspect", "--format", "{{.Id}}", docker_name).stdout.strip()
        info = skopeo_inspect(root, name)
        assert info["manifest"]["config"]["digest"] == image_id
        assert [x["digest"] for x in info["manifest"]["layers"]] == \
            info["config"]["rootfs"]["diff_ids"]


def test_build_load_into_docker(distill: RunDistill, built: Built, dockerd: Docker,
                                context: Path, tmp_path: Path) -> None:
    iidfile = tmp_path / "iid"
    proc = distill("build", "-q", "--load", "-t", "loadtest:docker", "-t",
                   "example.com/team/app:loaded", "--iidfile", str(iidfile), str(context),
                   env={"DOCKER_HOST": dockerd.host, **EPOCH})
    assert proc.stdout.strip() == built.digest and proc.stderr == ""
    inspect = json.loads(dockerd("image", "inspect", "loadtest:docker").stdout)[0]
    assert inspect["Id"] == iidfile.read_text()
    assert {"loadtest:docker", "example.com/team/app:loaded"} <= set(inspect["RepoTags"])


def test_load_without_an_engine_fails_before_the_build(distill: RunDistill, context: Path,
                                                       tmp_path: Path) -> None:
    sock = tmp_path / "no-docker.sock"
    proc = distill("build", "--load", str(context), env={"DOCKER_HOST": f"unix://{sock}"},
                   check=False)
    _clean_failure(proc, "--load", f"DOCKER_HOST=unix://{sock}")
    assert "#1" not in proc.stderr
    proc = distill("build", "--load", str(context), env={"PATH": str(tmp_path)}, check=False)
    _clean_failure(proc, "no 'docker' on PATH")


# -- hostile archives -------------------------------------------------------------------------

def _oci_with(built: Built, tmp_path: Path,
              change: Callable[[dict[str, bytes], dict], list[tarfile.TarInfo]]) -> Path:
    members = _members(built.oci_tar)
    manifest = json.loads(members[f"blobs/sha256/{built.digest.split(':')[1]}"])
    extra = change(members, manifest)
    return _write_tar(tmp_path / "hostile.tar", [*members.items(), *extra])


def _layer_name(manifest: dict, i: int) -> str:
    return f"blobs/sha256/{manifest['layers'][i]['digest'].split(':')[1]}"


def _dotdot(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    members["../escaped"] = b"x"
    return []


def _absolute(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    members["/etc/distill-test"] = b"x"
    return []


def _blob_symlink_out(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    name = _layer_name(manifest, 1)
    del members[name]
    return [_link(name, "../../../../etc/passwd")]


def _blob_symlink_absolute(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    name = _layer_name(manifest, 1)
    del members[name]
    return [_link(name, "/etc/passwd")]


def _blob_symlink_inside(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    name = _layer_name(manifest, 1)
    del members[name]
    return [_link(name, _layer_name(manifest, 0).rsplit("/", 1)[1])]


def _blob_hardlink_out(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    name = _layer_name(manifest, 1)
    del members[name]
    return [_link(name, "/etc/passwd", tarfile.LNKTYPE)]


def _blob_digest_mismatch(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    name = _layer_name(manifest, 1)
    data = bytearray(members[name])
    data[-20] ^= 0xFF                       # same size, other bytes
    members[name] = bytes(data)
    return []


def _missing_layer(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    del members[_layer_name(manifest, 1)]
    return []


def _a_fifo(members: dict[str, bytes], manifest: dict) -> list[tarfile.TarInfo]:
    info = tarfile.TarInfo("blobs/fifo")
    info.type = tarfile.FIFOTYPE
    return [info]


OCI_CASES: dict[str, tuple[Callable[[dict[str, bytes], dict], list[tarfile.TarInfo]], str]] = {
    "dotdot-member": (_dotdot, "has a '..' component"),
    "absolute-member": (_absolute, "has an absolute name"),
    "blob-symlink-out": (_blob_symlink_out, "leads out of the tar"),
    "blob-symlink-absolute": (_blob_symlink_absolute, "leads out of the tar"),
    "blob-symlink-to-another-blob": (_blob_symlink_inside, "is a symbolic link"),
    "blob-hardlink-out": (_blob_hardlink_out, "is not a file earlier in the tar"),
    "blob-digest-mismatch": (_blob_digest_mismatch, "content hashes to"),
    "missing-layer": (_missing_layer, "is missing"),
    "a-fifo": (_a_fifo, "device or FIFO"),
}


@pytest.mark.parametrize("case", sorted(OCI_CASES))
def test_hostile_oci_tar_is_refused(distill: RunDistill, built: Built, tmp_path: Path,
                                    case: str) -> None:
    change, needle = OCI_CASES[case]
    archive = _oci_with(built, tmp_path, change)
    root = tmp_path / "store"
    proc = distill("load", "-i", str(archive), root=root, check=False)
    _clean_failure(proc, f"error: {archive}: ", needle)
    _store_is_empty(root)


def _legacy_layer_swapped(legacy: Legacy) -> None:
    legacy.layers[1] = legacy.layers[0]      # a layer passed off as another: its diff_id differs


def _legacy_missing_layer(legacy: Legacy) -> None:
    legacy.layers.pop()                      # manifest.json still lists it


def _legacy_symlink_out(legacy: Legacy) -> None:
    legacy.entries.append(_link("evil/layer.tar", "../../etc/shadow"))


def _legacy_unchanged(legacy: Legacy) -> None:
    pass


LEGACY_CASES: dict[str, tuple[Callable[[Legacy], None], str, list[str] | None]] = {
    "layer-swapped": (_legacy_layer_swapped, "unpacks to", None),
    "layer-missing": (_legacy_missing_layer, "is not in the tar", None),
    "symlink-out": (_legacy_symlink_out, "leads out of the tar", None),
    "invalid-name": (_legacy_unchanged, "image name 'bad name:1'", ["bad name:1"]),
}


@pytest.mark.parametrize("case", sorted(LEGACY_CASES))
def test_hostile_docker_save_is_refused(distill: RunDistill, built: Built, tmp_path: Path,
                                        case: str) -> None:
    change, needle, tags = LEGACY_CASES[case]
    legacy = Legacy.of(built)
    change(legacy)
    archive = legacy.write(tmp_path / "hostile.tar", tags=tags)
    root = tmp_path / "store"
    proc = distill("load", "-i", str(archive), root=root, check=False)
    _clean_failure(proc, needle)
    _store_is_empty(root)


def test_a_rootfs_tarball_is_not_an_image_archive(distill: RunDistill, busybox_tar: Path,
                                                  tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = distill("load", "-i", str(busybox_tar), root=root, check=False)
    _clean_failure(proc, "no manifest.json", "distill import")
    _store_is_empty(root)


# -- distill import refuses image archives ------------------------------------------------------

@pytest.mark.parametrize(("which", "kind"), [("docker", "a docker save archive"),
                                             ("oci", "an OCI image layout"),
                                             ("legacy", "a docker save archive")])
def test_import_refuses_image_archives(distill: RunDistill, built: Built, tmp_path: Path,
                                       which: str, kind: str) -> None:
    archive = {"docker": built.docker_tar, "oci": built.oci_tar}.get(which) \
        or Legacy.of(built).write(tmp_path / "saved.tar")
    root = tmp_path / "store"
    proc = distill("import", str(archive), "x:1", root=root, check=False)
    _clean_failure(proc, f"{archive} is {kind}, not a root filesystem",
                   f"distill load -i {archive}")
    _store_is_empty(root)


# -- -q, --iidfile, --metadata-file -------------------------------------------------------------

def test_quiet_prints_only_the_digest(distill: RunDistill, built: Built, context: Path) -> None:
    for flags in (("-q",), ("--quiet",), ("--progress", "quiet")):
        proc = distill("build", *flags, "--no-cache", "-t", "loadtest:1", str(context),
                       env=EPOCH)
        assert proc.stdout == built.digest + "\n"
        assert proc.stderr == ""


def test_iidfile_and_metadata_file(distill: RunDistill, built: Built, context: Path,
                                   tmp_path: Path) -> None:
    iidfile, metadata = tmp_path / "out" / "iid", tmp_path / "out" / "metadata.json"
    layout = tmp_path / "layout"
    distill("build", "-q", "-t", "loadtest:1", "-t", "example.com/team/app:2", "--iidfile",
            str(iidfile), "--metadata-file", str(metadata), "--output",
            f"type=oci,dest={layout},tar=false", str(context), env=EPOCH)
    info = skopeo_inspect(layout, "1")
    raw = (layout / "blobs/sha256" / info["manifest_digest"].split(":")[1]).read_bytes()
    assert iidfile.read_text() == info["manifest"]["config"]["digest"]   # buildx: config digest
    assert json.loads(metadata.read_text()) == {
        "containerimage.config.digest": info["manifest"]["config"]["digest"],
        "containerimage.digest": info["manifest_digest"],
        "containerimage.descriptor": {"mediaType": info["manifest"]["mediaType"],
                                      "digest": info["manifest_digest"], "size": len(raw)},
        "image.name": f"{NAME},example.com/team/app:2",
    }
    assert info["manifest_digest"] == built.digest
    # untagged: no image.name
    distill("build", "-q", "--metadata-file", str(metadata), str(context))
    assert "image.name" not in json.loads(metadata.read_text())


def test_a_failed_build_leaves_no_stale_iidfile(distill: RunDistill, busybox_image: str,
                                                tmp_path: Path) -> None:
    iidfile = tmp_path / "iid"
    iidfile.write_text("sha256:stale")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN false\n")
    proc = distill("build", "-q", "--iidfile", str(iidfile), str(ctx), check=False)
    assert proc.returncode == 1
    assert not iidfile.exists()
