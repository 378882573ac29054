"""Full Debian root filesystems from Debian's own bootstrapper, mmdebstrap."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from distill.errors import SandboxError
from distill.sandbox import rootless

DEFAULT_MIRROR = "http://deb.debian.org/debian"


def mmdebstrap_tarball(dest: Path, *, suite: str = "bookworm", arch: str = "amd64",
                       mirror: str = DEFAULT_MIRROR, variant: str = "minbase",
                       include: Sequence[str] = (), source_date_epoch: int | None = None) -> None:
    """Bootstrap ``suite`` into the tarball ``dest`` (its name must end in .tar)."""
    if shutil.which("mmdebstrap") is None:
        raise SandboxError("mmdebstrap is not installed",
                           hint="apt-get install mmdebstrap (Debian's package)")
    if rootless.active() and rootless.mapped_ids() <= 1:
        raise SandboxError("a Debian base cannot be made with a single id: its files belong "
                           "to several users and groups (mail, shadow, staff)",
                           hint=rootless.owner_hint(0, 50))
    if not dest.name.endswith(".tar"):
        raise SandboxError(f"{dest}: mmdebstrap picks its output format by name; use .tar")
    argv = ["mmdebstrap", "--quiet", f"--variant={variant}", "--mode=root", f"--arch={arch}"]
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [suite, str(dest), mirror]
    env = dict(os.environ)
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)   # its failure becomes the SandboxError below
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-8:]
        raise SandboxError(f"mmdebstrap {suite} failed (exit code {proc.returncode})",
                           hint="\n".join(tail) or None)
