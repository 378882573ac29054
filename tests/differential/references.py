"""The reference builders a case is compared with: buildah, and BuildKit inside Docker's engine.

Each one builds a case's context with a given Dockerfile and writes the image as an OCI
layout directory (ref ``latest``), the form ``snapshot_image`` reads. Neither touches the
machine's own stores or a network: buildah runs in a private store (tests/helpers/buildah.py)
and BuildKit in a private dockerd (tests/helpers/dockerd.py), both with the same busybox
base distill uses, and no pulls.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from tests.differential.cases import SYNTAX, Case
from tests.helpers.buildah import Buildah, BuildahError
from tests.helpers.dockerd import Docker

REF = "latest"


class ReferenceFailed(RuntimeError):
    """The reference builder could not build or export the case."""


@dataclass(frozen=True)
class Inputs:
    """What every builder of one case run gets besides the context."""

    build_args: dict[str, str]
    secrets: dict[str, Path]          # id -> file
    ssh_socket: Path | None           # passed as --ssh default=SOCKET

    def mount_flags(self) -> list[str]:
        """``--secret`` and ``--ssh``, spelled alike by distill, buildah and docker."""
        out = [f"--secret=id={key},src={src}" for key, src in self.secrets.items()]
        if self.ssh_socket is not None:
            out.append(f"--ssh=default={self.ssh_socket}")
        return out

    def flags(self) -> list[str]:
        """``mount_flags`` and a ``--build-arg`` per build arg."""
        return [*(f"--build-arg={k}={v}" for k, v in self.build_args.items()),
                *self.mount_flags()]


class Reference(ABC):
    name: str
    lacks: frozenset[str]        # names from cases.SYNTAX this builder does not understand

    def dockerfile(self, case: Case) -> str:
        """The Dockerfile this builder builds: the case's own, or its equivalent."""
        missing = case.needs & self.lacks
        if not missing:
            return "Dockerfile"
        if case.equivalent is None:
            raise ReferenceFailed(f"{self.name} lacks {', '.join(sorted(missing))} and the "
                                  "case has no equivalent Dockerfile")
        return case.equivalent

    @abstractmethod
    def build_oci(self, case: Case, ctx: Path, inputs: Inputs, out: Path) -> None:
        """Build ``ctx`` and write the image to the OCI layout ``out`` as ``latest``."""

    def raw_config(self, out: Path) -> Path | None:
        """The image's config as the builder wrote it, where the layout's is a conversion."""
        return None


def _tag(case: Case) -> str:
    return f"localhost/differential-{case.name.replace('_', '-')}:{REF}"


class BuildahReference(Reference):
    name = "buildah"
    lacks = frozenset(SYNTAX)      # buildah 1.28: see SYNTAX

    def __init__(self, buildah: Buildah) -> None:
        self.buildah = buildah

    def build_oci(self, case: Case, ctx: Path, inputs: Inputs, out: Path) -> None:
        tag = _tag(case)
        try:
            self.buildah.build(ctx, ctx / self.dockerfile(case), tag,
                               build_args=inputs.build_args, target=case.target,
                               extra=inputs.mount_flags())
            self.buildah.push_oci(tag, out, REF)
        except BuildahError as e:
            raise ReferenceFailed(str(e)) from None
        finally:
            self.buildah.remove_image(tag)


class BuildKitReference(Reference):
    """``DOCKER_BUILDKIT=1 docker build`` against a private dockerd, exported with
    ``docker save`` and turned into an OCI layout by skopeo. That conversion rewrites the
    config as an OCI one and drops Docker's Shell, Healthcheck and OnBuild, so the config
    exactly as BuildKit wrote it is kept beside the layout (``raw_config``)."""

    name = "BuildKit"
    # dockerd 20.10's built-in frontend is about dockerfile:1.2: RUN --mount in full, but
    # none of the later syntax
    lacks = frozenset({"heredoc", "copy-link", "copy-exclude", "copy-parents", "run-network",
                       "add-checksum", "add-git"})   # 0.8 downloads a git URL as a file

    def __init__(self, docker: Docker, workdir: Path) -> None:
        self.docker = docker
        self.workdir = workdir

    def _docker(self, *args: str) -> None:
        proc = self.docker(*args, check=False, env={"DOCKER_BUILDKIT": "1"})
        if proc.returncode != 0:
            raise ReferenceFailed(f"docker {' '.join(args)} exited {proc.returncode}:\n"
                                  f"{proc.stdout}{proc.stderr}")

    def build_oci(self, case: Case, ctx: Path, inputs: Inputs, out: Path) -> None:
        tag = _tag(case)
        argv = ["build", "--progress", "plain", "--network", "host",
                "-f", str(ctx / self.dockerfile(case)), "-t", tag, *inputs.flags()]
        if case.target:
            argv += ["--target", case.target]
        archive = out.with_suffix(".docker.tar")
        try:
            self._docker(*argv, str(ctx))
            self._docker("save", "-o", str(archive), tag)
        finally:
            self.docker("rmi", "--force", tag, check=False)
        proc = subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{archive}",
                               f"oci:{out}:{REF}"], capture_output=True, text=True)
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            config = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        self._raw_config_path(out).write_bytes(config)
        os.unlink(archive)
        if proc.returncode != 0:
            raise ReferenceFailed(f"skopeo copy of BuildKit's image failed: {proc.stderr}")

    @staticmethod
    def _raw_config_path(out: Path) -> Path:
        return out.with_suffix(".config.json")

    def raw_config(self, out: Path) -> Path | None:
        return self._raw_config_path(out)
