"""The files distroless adds around the packages, written into an unpacked root."""

from __future__ import annotations

import os
from pathlib import Path

from distill.distroless.presets import NONROOT_UID

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = (
    "root:x:0:\n"
    "tty:x:5:\n"
    "staff:x:50:\n"
    "nobody:x:65534:\n"
    f"nonroot:x:{NONROOT_UID}:\n"
)
NSSWITCH = (
    "passwd:         files\n"
    "group:          files\n"
    "shadow:         files\n"
    "gshadow:        files\n"
    "\n"
    "hosts:          files dns\n"
    "networks:       files\n"
    "\n"
    "protocols:      db files\n"
    "services:       db files\n"
    "ethers:         db files\n"
    "rpc:            db files\n"
)
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
MOZILLA_CERTS = "usr/share/ca-certificates/mozilla"


def _write(root: Path, rel: str, text: str | bytes, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)


def _dir(root: Path, rel: str, mode: int, owner: int = 0) -> None:
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, owner, owner)
    os.chmod(path, mode)


def os_release(version_id: str, codename: str) -> str:
    return (
        f'PRETTY_NAME="Distroless (distill, Debian GNU/Linux {version_id} ({codename}))"\n'
        'NAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version_id}"\n'
        f'VERSION="{version_id} ({codename})"\n'
        f"VERSION_CODENAME={codename}\n"
        "ID=debian\n"
        'HOME_URL="https://www.debian.org/"\n'
    )


def ca_bundle(root: Path) -> bytes | None:
    """Concatenate the Mozilla certificates of the ca-certificates package, sorted by name
    (what update-ca-certificates produces from the default configuration)."""
    certs = root / MOZILLA_CERTS
    if not certs.is_dir():
        return None
    parts = []
    for cert in sorted(certs.glob("*.crt")):
        data = cert.read_bytes()
        parts.append(data if data.endswith(b"\n") else data + b"\n")
    return b"".join(parts)


def add_distroless_files(root: Path, *, version_id: str, codename: str, debug: bool) -> None:
    _write(root, "etc/passwd", PASSWD)
    _write(root, "etc/group", GROUP)
    _write(root, "etc/nsswitch.conf", NSSWITCH)
    _write(root, "etc/os-release", os_release(version_id, codename))
    _dir(root, "tmp", 0o1777)
    _dir(root, "root", 0o700)
    _dir(root, "home", 0o755)
    _dir(root, "home/nonroot", 0o700, NONROOT_UID)
    bundle = ca_bundle(root)
    if bundle is not None:
        _write(root, CA_BUNDLE, bundle)
    if debug:
        busybox = root / "busybox"
        busybox.mkdir(exist_ok=True)
        for applet in ("busybox", "sh"):
            link = busybox / applet
            if not link.is_symlink():
                link.symlink_to("/bin/busybox")


def write_status(root: Path, package: str, control: str, md5sums: bytes | None) -> None:
    """/var/lib/dpkg/status.d/<package> (+ .md5sums): the database scanners read."""
    status = root / "var/lib/dpkg/status.d"
    _write(root, f"{status.relative_to(root)}/{package}",
           control if control.endswith("\n") else control + "\n")
    if md5sums:
        _write(root, f"{status.relative_to(root)}/{package}.md5sums", md5sums)
