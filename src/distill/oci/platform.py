"""Platforms (os/architecture/variant) and the host's default."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from distill.errors import UsageError

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


#: What Go (and so every OCI tool) names operating systems and architectures.
KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris",
                      "illumos", "aix", "android", "ios", "plan9", "dragonfly", "js",
                      "wasip1"})
KNOWN_ARCH = frozenset({"386", "amd64", "arm", "arm64", "ppc64", "ppc64le", "mips", "mipsle",
                        "mips64", "mips64le", "riscv64", "s390x", "loong64", "wasm",
                        "sparc64"})


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
    def from_flag(cls, value: str | None) -> Platform | None:
        """``--platform``: one platform, or None when not given (buildx's list of several
        is not supported yet)."""
        if not value:
            return None
        if "," in value:
            raise UsageError(f"--platform {value}: building for several platforms at once is "
                             "not supported", hint="build once per platform")
        return cls.parse(value)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8``, ``linux/amd64``, or ``arm64`` (Linux assumed), as
        ``--platform`` takes it; names normalised as containerd does (x86_64 is amd64)."""
        parts = text.strip().lower().split("/")
        if len(parts) == 1 and parts[0] and parts[0] != "linux":
            parts = ["linux", parts[0]]
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise UsageError(f"invalid platform {text!r}",
                             hint="expected OS/ARCH[/VARIANT], e.g. linux/arm64")
        platform = cls(*parts).normalized()
        if platform.os not in KNOWN_OS or platform.architecture not in KNOWN_ARCH:
            raise UsageError(f"invalid platform {text!r}: unknown operating system or "
                             "architecture", hint="e.g. linux/amd64, linux/arm64, linux/arm/v7")
        return platform

    def normalized(self) -> Platform:
        arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                "armel": "arm", "i386": "386", "i686": "386"}.get(self.architecture,
                                                                   self.architecture)
        variant = self.variant
        if arch == "arm64" and variant in ("8", "v8"):
            variant = ""     # arm64 is v8 unless it says otherwise
        elif arch == "arm":
            variant = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant, variant)
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os, arch, variant)

    def matches(self, offered: Platform) -> bool:
        """Whether an image made for ``offered`` is one for this platform."""
        return self.normalized() == offered.normalized()

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine()
        return cls("linux", _ARCH.get(machine, machine))
