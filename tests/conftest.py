"""Shared fixtures: a private store per session, tiny bases, the CLI as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.bases import write_busybox_rootfs_tar

REPO = Path(__file__).resolve().parents[1]
DISTILL = str(Path(sys.executable).with_name("distill"))

RunDistill = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def distill(store_root: Path) -> RunDistill:
    """Run the distill CLI against the session store; returns the CompletedProcess."""
    def run(*args: str, check: bool = True, root: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "DISTILL_ROOT": str(root or store_root), **(env or {})}
        proc = subprocess.run([DISTILL, *args], capture_output=True, text=True, env=full_env)
        if check and proc.returncode != 0:
            raise AssertionError(f"distill {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc
    return run


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_busybox_rootfs_tar(tmp_path_factory.mktemp("bases") / "busybox.tar")


@pytest.fixture(scope="session")
def busybox_image(distill: RunDistill, busybox_tar: Path) -> str:
    distill("import", str(busybox_tar), "busybox:latest")
    return "busybox:latest"


@pytest.fixture(scope="session")
def debian_image(distill: RunDistill) -> str:
    distill("base", "debian", "-t", "debian:bookworm")
    return "debian:bookworm"


@pytest.fixture(scope="session")
def distroless_static(distill: RunDistill) -> str:
    distill("base", "static:nonroot", "-t", "distroless/static:nonroot")
    return "distroless/static:nonroot"


@pytest.fixture(scope="session")
def distroless_python3(distill: RunDistill) -> str:
    distill("base", "python3:nonroot", "-t", "distroless/python3:nonroot")
    return "distroless/python3:nonroot"
