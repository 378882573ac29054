"""Distroless images as the tests build and read them back: `distill base PRESET` written
to an OCI layout, validated, inspected by skopeo and unpacked by umoci."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.debian.lock import Lock
from tests.conftest import RunDistill
from tests.helpers.oci_validate import validate_layout
from tests.helpers.readback import skopeo_inspect, umoci_unpack
from tests.helpers.unpacked import resolve_in


@dataclass(frozen=True)
class Built:
    """One `distill base PRESET -o type=oci,dest=DIR,tar=false`, validated and unpacked."""

    preset: str
    digest: str
    layout: Path
    ref: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    rootfs: Path
    lock: Lock

    @property
    def debug(self) -> bool:
        return "debug" in self.preset.partition(":")[2]

    @property
    def nonroot(self) -> bool:
        return "nonroot" in self.preset.partition(":")[2]

    def read(self, rel: str) -> bytes:
        path = resolve_in(self.rootfs, rel)
        assert path is not None, f"{self.preset}: /{rel} does not exist (or dangles)"
        return path.read_bytes()


def printed_digest(stdout: str, name: str) -> str:
    """The digest `distill base` printed for ``name`` (it prints 'NAME DIGEST' lines)."""
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == name:
            return words[1]
    raise AssertionError(f"no digest for {name} in {stdout!r}")


def build_unpacked(distill: RunDistill, preset: str, workdir: Path) -> Built:
    workdir.mkdir(parents=True)
    name, _, tag = f"distroless/{preset}".partition(":")
    tag = tag or "latest"
    layout, lock_file = workdir / "layout", workdir / "lock.json"
    proc = distill("base", preset, "-t", f"{name}:{tag}", "--write-lock", str(lock_file),
                   "-o", f"type=oci,dest={layout},tar=false")
    digest = printed_digest(proc.stdout, f"{name}:{tag}")
    validate_layout(layout)  # schemas, and every reachable blob's size and digest
    info = skopeo_inspect(layout, tag)
    assert info["manifest_digest"] == digest
    rootfs = umoci_unpack(layout, tag, workdir / "bundle")
    return Built(preset, digest, layout, tag, info["manifest"], info["config"], rootfs,
                 Lock.from_json(lock_file.read_text()))


def unpacker(distill: RunDistill, tmp_path_factory: pytest.TempPathFactory,
             name: str) -> Callable[[str], Built]:
    """PRESET[:VARIANT] -> its Built, each built and unpacked once (for a module fixture)."""
    root = tmp_path_factory.mktemp(name)
    done: dict[str, Built] = {}

    def get(preset: str) -> Built:
        if preset not in done:
            done[preset] = build_unpacked(distill, preset, root / preset.replace(":", "-"))
        return done[preset]
    return get
