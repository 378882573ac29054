"""Tiny base root filesystems for tests, made from Debian packages on the host."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n"


def _applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return sorted(set(out.stdout.split()) - {"busybox"})


def write_busybox_rootfs_tar(dest: Path) -> Path:
    """A root filesystem with Debian's busybox-static: /bin/busybox, applet symlinks in /bin,
    /etc/passwd and /etc/group (root, app=1000), /tmp 1777. Deterministic (mtime 0)."""
    def add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"",
            link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("home", 0o755), ("root", 0o700),
                        ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755), ("var", 0o755)):
            add(tar, d, tarfile.DIRTYPE, mode)
        add(tar, "bin/busybox", tarfile.REGTYPE, 0o755, BUSYBOX.read_bytes())
        for applet in _applets():
            add(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add(tar, "etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add(tar, "etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
        add(tar, "home/app", tarfile.DIRTYPE, 0o755)
    return dest


def install_busybox(rootfs: Path) -> None:
    """Put Debian's static busybox at rootfs/bin/busybox with a symlink per applet."""
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in _applets():
        os.symlink("busybox", rootfs / "bin" / applet)
