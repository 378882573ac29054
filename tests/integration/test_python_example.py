"""examples/python-app: a virtualenv built on debian:bookworm (pip from PyPI), shipped on
distroless/python3:nonroot, written as an OCI layout and as a docker archive, loaded into
Docker's engine, run as uid 65532, answering HTTP — with no shell anywhere in it."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.formats.stored import load
from distill.store.store import Store
from tests.conftest import REPO, RunDistill
from tests.helpers.dockerd import private_dockerd
from tests.helpers.examples import example_context, free_port, get_when_up
from tests.helpers.oci_validate import validate_layout
from tests.helpers.readback import skopeo_inspect, umoci_unpack
from tests.helpers.unpacked import entries, is_elf, resolve_in

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "python-app"
ANSWER = "hello from distill python (uid 65532)\n"
ENTRYPOINT = ["/venv/bin/python3", "/app/app.py"]
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash",
          "bin/busybox", "usr/bin/busybox")


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ctx = example_context(EXAMPLE, tmp_path_factory.mktemp("python-app") / "python-app")
    yield ctx
    shutil.rmtree(ctx, ignore_errors=True)


@pytest.fixture(scope="module")
def python_app(distill: RunDistill, debian_image: str, distroless_python3: str,
               context: Path) -> str:
    distill("build", "--progress", "plain", "-t", "python-app:test", str(context))
    return "python-app:test"


def test_built_on_distroless_python3(python_app: str, distroless_python3: str,
                                     store_root: Path) -> None:
    store = Store(store_root)
    image = load(store, store.resolve(python_app).digest)
    base = load(store, store.resolve(distroless_python3).digest)
    assert image.layers[:len(base.layers)] == base.layers  # the base, untouched
    assert len(image.layers) == len(base.layers) + 2     # + the venv, + app.py
    assert image.runtime.user == "65532"
    assert list(image.runtime.entrypoint or ()) == ENTRYPOINT
    # The venv layer is all the build stage leaves behind (the Debian stage is ~150 MB).
    added = image.compressed_size() - base.compressed_size()
    assert 0 < added < 20_000_000, added


def test_oci_layout_validates_and_has_no_shell(distill: RunDistill, python_app: str,
                                               context: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    distill("build", "--progress", "quiet", "-t", "python-app:oci",
            "--output", f"type=oci,dest={layout},tar=false", str(context))
    validate_layout(layout)
    info = skopeo_inspect(layout, "oci")
    assert info["config"]["config"]["User"] == "65532"
    assert info["config"]["config"]["Entrypoint"] == ENTRYPOINT
    rootfs = umoci_unpack(layout, "oci", tmp_path / "bundle")
    tree = entries(rootfs)
    assert not [p for p in SHELLS if p in tree]
    python = resolve_in(rootfs, "venv/bin/python3")
    assert python is not None and is_elf(python), "/venv/bin/python3 leads nowhere"
    assert python == resolve_in(rootfs, "usr/bin/python3")
    assert (rootfs / "app/app.py").read_bytes() == (context / "app.py").read_bytes()
    assert list(rootfs.glob("venv/lib/python3*/site-packages/bottle.py"))


def test_docker_engine_runs_it(distill: RunDistill, python_app: str, context: Path,
                               tmp_path: Path) -> None:
    archive = tmp_path / "python-app.tar"
    distill("build", "--progress", "quiet", "-t", "python-app:docker",
            "--output", f"type=docker,dest={archive}", str(context))
    with private_dockerd(tmp_path / "docker") as docker:
        assert "python-app:docker" in docker("load", "-i", str(archive)).stdout
        assert docker("image", "inspect", "-f", "{{.Config.User}}",
                      "python-app:docker").stdout.strip() == "65532"
        port = free_port()
        cid = docker("run", "-d", "--network=host", "-e", f"ADDR=127.0.0.1:{port}",
                     "python-app:docker").stdout.strip()
        try:
            answer = get_when_up(docker, cid, f"http://127.0.0.1:{port}/")
        finally:
            docker("rm", "-f", cid, check=False)
        assert answer == ANSWER

        # The engine's own view of the filesystem: no shell, and none can be started.
        created = docker("create", "python-app:docker").stdout.strip()
        exported = tmp_path / "exported.tar"
        docker("export", "-o", str(exported), created)
        docker("rm", created)
        with tarfile.open(exported) as tar:
            names = {m.name.rstrip("/") for m in tar}
        assert "venv/bin/python3" in names and "app/app.py" in names
        assert not [p for p in SHELLS if p in names]
        shell = docker("run", "--rm", "--network=host", "--entrypoint", "/bin/sh",
                       "python-app:docker", "-c", "true", check=False)
        assert shell.returncode != 0
        assert "no such file or directory" in shell.stderr
