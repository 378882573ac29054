"""Fixtures for the differential suite: buildah in a private store and BuildKit in a private
dockerd, each with the same busybox base distill uses. ``differential`` is parametrized over
both, so every test of the suite runs once against each reference builder."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.differential.references import BuildahReference, BuildKitReference, Reference
from tests.differential.runner import DifferentialRunner
from tests.helpers.buildah import Buildah, BuildahError, have_buildah
from tests.helpers.dockerd import private_dockerd
from tests.helpers.rootless import needs_root


def _export(distill: RunDistill, image: str, work: Path, output: str) -> None:
    ctx = work / "context"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {image}\n")
    distill("build", "--progress", "quiet", "--output", output, "-t", image, str(ctx))


@pytest.fixture(scope="session")
def busybox_layout(distill: RunDistill, busybox_image: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's busybox:latest as an OCI layout directory, ref ``latest``."""
    work = tmp_path_factory.mktemp("busybox-layout")
    _export(distill, busybox_image, work, f"type=oci,dest={work / 'layout'},tar=false")
    return work / "layout"


# Package scope: the reference builders (a dockerd above all) stop when the suite is done,
# before other tests start engines of their own.
@pytest.fixture(scope="package")
def buildah(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    """buildah in a private store under the session's tmp dir, with busybox:latest loaded."""
    assert have_buildah(), "the differential suite needs buildah (apt-get install buildah)"
    errors = []
    for driver in ("overlay", "vfs"):   # overlay keeps RUN's hardlinks as BuildKit does
        b = Buildah(tmp_path_factory.mktemp(f"buildah-{driver}"), driver)
        try:
            b.load_oci(busybox_layout, "latest", "busybox:latest")
        except BuildahError as e:
            errors.append(str(e))
            b.cleanup()
            continue
        yield b
        b.cleanup()
        return
    raise AssertionError("buildah cannot load the busybox base:\n" + "\n".join(errors))


@pytest.fixture(scope="package")
def buildkit(distill: RunDistill, busybox_image: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildKitReference]:
    """BuildKit in a private dockerd (Debian's docker.io), with busybox:latest loaded."""
    work = tmp_path_factory.mktemp("buildkit")
    archive = work / "busybox.docker.tar"
    _export(distill, busybox_image, work, f"type=docker,dest={archive}")
    with private_dockerd(work / "dockerd") as docker:
        docker("load", "-i", str(archive))
        yield BuildKitReference(docker, work)


@pytest.fixture(scope="package")
def ssh_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ssh-agent (with no keys) on a socket, for RUN --mount=type=ssh cases."""
    sock = tmp_path_factory.mktemp("ssh-agent") / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists() or agent.poll() is not None:
            break
        time.sleep(0.05)     # poll interval while the agent creates its socket
    assert sock.exists(), "ssh-agent did not start (Debian package openssh-client)"
    yield sock
    agent.terminate()
    agent.wait()


# BuildKit's dockerd needs root: a rootless run (tests/rootless/run) compares with buildah,
# itself rootless there
@pytest.fixture(scope="package", params=["buildah", pytest.param("BuildKit", marks=needs_root)])
def differential(request: pytest.FixtureRequest, distill: RunDistill, ssh_agent: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> DifferentialRunner:
    """Builds and compares cases against one reference; outcomes are kept for the summary."""
    reference: Reference
    if request.param == "buildah":
        reference = BuildahReference(request.getfixturevalue("buildah"))
    else:
        reference = request.getfixturevalue("buildkit")
    return DifferentialRunner(distill, reference,
                              tmp_path_factory.mktemp(f"differential-{request.param}"),
                              ssh_socket=ssh_agent)
