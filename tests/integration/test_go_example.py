"""The headline: examples/go-hello built multi-stage on a Debian base, shipped tiny,
loaded into Docker's engine, run, and answering HTTP."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from distill.formats.stored import load
from distill.oci.reference import normalize_name
from distill.store.store import Store
from tests.conftest import REPO, RunDistill
from tests.helpers.clock import next_second
from tests.helpers.dockerd import Docker, private_dockerd
from tests.helpers.examples import free_port
from tests.helpers.readback import skopeo_inspect

pytestmark = pytest.mark.integration
EXAMPLE = REPO / "examples" / "go-hello"


def http_get(url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ask_go_hello(docker: Docker, image: str) -> str:
    """Run go-hello's ``image`` under ``docker`` and return what it answers on /."""
    port = free_port()
    cid = docker("run", "-d", "--network=host", "-e", f"ADDR=127.0.0.1:{port}",
                 image).stdout.strip()
    try:
        answer = http_get(f"http://127.0.0.1:{port}/")
    finally:
        logs = docker("logs", cid, check=False).stderr
        docker("rm", "-f", cid, check=False)
    assert answer.startswith("hello from distill"), logs
    return answer


@pytest.fixture(scope="module")
def go_hello(distill: RunDistill, debian_image: str, distroless_static: str,
             store_root: Path) -> str:
    distill("build", "--progress", "plain", "-t", "go-hello:test", str(EXAMPLE))
    return "go-hello:test"


def test_final_image_is_small_and_non_root(go_hello: str, store_root: Path) -> None:
    store = Store(store_root)
    image = load(store, store.resolve(go_hello).digest)
    assert image.uncompressed_size() < 10_000_000
    assert image.compressed_size() < 10_000_000
    assert image.runtime.user == "65532"
    assert image.runtime.entrypoint == ("/hello",)


def test_store_is_readable_by_skopeo(go_hello: str, store_root: Path) -> None:
    info = skopeo_inspect(store_root, normalize_name(go_hello))
    assert info["config"]["config"]["User"] == "65532"


def test_docker_engine_runs_it(distill: RunDistill, go_hello: str, tmp_path: Path) -> None:
    archive = tmp_path / "go-hello.tar"
    distill("build", "--progress", "quiet", "-t", "go-hello:docker",
            "--output", f"type=docker,dest={archive}", str(EXAMPLE))
    with private_dockerd(tmp_path / "docker") as docker:
        loaded = docker("load", "-i", str(archive)).stdout
        assert "go-hello:docker" in loaded
        assert "uid 65532" in ask_go_hello(docker, "go-hello:docker")


def test_two_machines_at_two_times_make_the_same_image(
        distill: RunDistill, debian_image: str, distroless_static: str,
        tmp_path: Path) -> None:
    """Reproducible (issue 10): the example in two directories (files with other times),
    built on two fresh stores at two times with SOURCE_DATE_EPOCH, is one image. The
    build stage (apt, the Go toolchain) differs between the two; what ships does not.
    The bases are the same images on both "machines" (loaded from one export)."""
    bases = []
    for name in (debian_image, distroless_static):
        ctx = tmp_path / f"export-{len(bases)}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {name}\n")
        bases.append(tmp_path / f"base-{len(bases)}.tar")
        distill("build", "--progress", "quiet", "-t", name, "--output",
                f"type=oci,dest={bases[-1]}", str(ctx))
    digests = []
    for machine in ("a", "b"):
        root = tmp_path / f"store-{machine}"
        for archive in bases:
            distill("load", "-q", "-i", str(archive), root=root)
        project = tmp_path / f"checkout-{machine}"
        shutil.copytree(EXAMPLE, project)          # copied now: other file times
        proc = distill("build", "--progress", "quiet", "-t", "go-hello:repro", str(project),
                       root=root, env={"SOURCE_DATE_EPOCH": "1700000000"})
        digests.append(proc.stdout.strip().splitlines()[-1])
        next_second()                  # another second on the clock
    assert digests[0] == digests[1]
