"""Shared fixtures: a private store per session, tiny bases, the CLI as users run it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.bases import write_busybox_rootfs_tar
from tests.helpers.registry import (
    FaultProxy,
    RegistryServer,
    start_http_registry,
    start_tls_basic_registry,
    start_token_registry,
)

REPO = Path(__file__).resolve().parents[1]
DISTILL = str(Path(sys.executable).with_name("distill"))

RunDistill = Callable[..., subprocess.CompletedProcess[str]]

#: host files a build must never reach; checked after every test (an lstat each)
HOST_SENTINELS = ("/dev/null", "/dev/zero")


@pytest.fixture(autouse=True)
def host_devices_untouched() -> Iterator[None]:
    """Nothing a test builds may remove or replace the host's device nodes (on
    2026-12-03 this machine's /dev/null was found replaced by a regular file during a
    session of builds and reviews; the cause was not found). The test that does it fails."""
    before = {p: os.lstat(p) for p in HOST_SENTINELS}
    yield
    for path, was in before.items():
        now = os.lstat(path)
        assert stat.S_ISCHR(now.st_mode) and (now.st_ino, now.st_rdev) == \
            (was.st_ino, was.st_rdev), f"the host's {path} was replaced during this test"


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def distill(store_root: Path) -> RunDistill:
    """Run the distill CLI against the session store; returns the CompletedProcess."""
    def run(*args: str, check: bool = True, root: Path | None = None,
            env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "DISTILL_ROOT": str(root or store_root), **(env or {})}
        proc = subprocess.run([DISTILL, *args], capture_output=True, text=True, env=full_env,
                              input=input)
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


# Registries (tests/helpers/registry.py): real `docker-registry` processes on 127.0.0.1.
# The session ones are shared: push to a repository no other test uses (unique_repo).


@pytest.fixture(scope="session")
def registry_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Anonymous, plain HTTP."""
    registry = start_http_registry(tmp_path_factory.mktemp("registry-http"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def registry_tls_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """htpasswd basic auth over TLS (ca_path, cert_dir, username, password)."""
    registry = start_tls_basic_registry(tmp_path_factory.mktemp("registry-tls"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Bearer tokens from registry_token.token (a TokenServer): anonymous pull, push with
    username/password; registry_token.token.token_requests records each token request."""
    registry = start_token_registry(tmp_path_factory.mktemp("registry-token"))
    yield registry
    registry.stop()


@pytest.fixture
def fresh_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An empty anonymous HTTP registry for one test."""
    registry = start_http_registry(tmp_path_factory.mktemp("registry-fresh"))
    yield registry
    registry.stop()


@pytest.fixture
def fault_proxy(registry_http: RegistryServer) -> Iterator[FaultProxy]:
    """A FaultProxy in front of registry_http, for one test."""
    proxy = FaultProxy(registry_http.url).start()
    yield proxy
    proxy.stop()
