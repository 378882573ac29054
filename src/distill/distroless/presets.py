"""Presets like Google's distroless images, and their :nonroot / :debug variants."""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import UsageError

# Never installed: maintainer-script machinery and tools a distroless image does without.
# Dependencies on them count as satisfied (what distroless does by hand-picking packages).
EXCLUDE = frozenset({
    "debconf", "debconf-2.0", "perl-base", "dpkg", "openssl", "init-system-helpers",
    "debianutils", "sensible-utils", "install-info", "readline-common", "lsb-base",
    "sysvinit-utils", "bash", "dash", "coreutils", "tar", "gzip", "ucf",
    "awk", "mawk", "gawk", "original-awk",
})

STATIC = ("base-files", "netbase", "tzdata", "ca-certificates")
BASE = STATIC + ("libc6", "libssl3")
CC = BASE + ("libgcc-s1", "libstdc++6", "libgomp1")
PYTHON3 = BASE + ("python3",)

PRESETS: dict[str, tuple[str, ...]] = {
    "static": STATIC, "base": BASE, "cc": CC, "python3": PYTHON3,
}
NONROOT_UID = 65532


@dataclass(frozen=True)
class Variant:
    nonroot: bool = False
    debug: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        words = set(text.split("-")) if text else set()
        unknown = words - {"nonroot", "debug", "latest"}
        if unknown:
            raise UsageError(f"unknown variant {text!r}",
                             hint="variants: nonroot, debug, debug-nonroot")
        return cls(nonroot="nonroot" in words, debug="debug" in words)


@dataclass(frozen=True)
class Selection:
    """What to install: package names, whether to follow dependencies, and the variant."""

    packages: tuple[str, ...]
    variant: Variant
    label: str

    @property
    def wanted(self) -> tuple[str, ...]:
        return self.packages + (("busybox-static",) if self.variant.debug else ())


def select(preset: str | None, packages: tuple[str, ...]) -> Selection:
    """`static`, `python3:nonroot`, ... or an explicit package list (with --package)."""
    if preset is None:
        if not packages:
            raise UsageError("name a preset or give --package")
        return Selection(tuple(packages), Variant(), "packages")
    name, _, variant = preset.partition(":")
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}",
                         hint="presets: " + ", ".join([*PRESETS, "debian"]))
    return Selection(PRESETS[name] + tuple(packages), Variant.parse(variant), preset)
