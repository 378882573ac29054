"""Platforms (os/architecture/variant) and the host's default."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s

    def to_dict(self) -> dict[str, Any]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Platform:
        return cls(os=str(d.get("os", "linux")), architecture=str(d.get("architecture", "amd64")),
                   variant=str(d.get("variant", "")))

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine()
        return cls("linux", _ARCH.get(machine, machine))
