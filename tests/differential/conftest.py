"""Fixtures for the differential suite: a private buildah with the same busybox base."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.differential.runner import DifferentialRunner
from tests.helpers.buildah import Buildah, BuildahError, have_buildah


@pytest.fixture(scope="session")
def busybox_layout(distill: RunDistill, busybox_image: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's busybox:latest as an OCI layout directory, ref ``latest``."""
    work = tmp_path_factory.mktemp("busybox-layout")
    ctx = work / "context"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\n")
    layout = work / "layout"
    distill("build", "--progress", "quiet", "--output", f"type=oci,dest={layout},tar=false",
            "-t", busybox_image, str(ctx))
    return layout


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def differential(distill: RunDistill, buildah: Buildah,
                 tmp_path_factory: pytest.TempPathFactory) -> DifferentialRunner:
    """Builds and compares cases; outcomes are kept for the summary test."""
    return DifferentialRunner(distill, buildah, tmp_path_factory.mktemp("differential"))
