"""The files distroless adds around the packages, written into an unpacked root.

Every path is resolved inside the root as if chrooted there (a package's symlink, say
``/busybox -> /``, cannot send a write to the host).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path

from distill.confine import make_dirs, resolve_in_root
from distill.distroless.presets import NONROOT_UID
from distill.errors import ArchiveError

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = (       # in Google's order
    "root:x:0:\n"
    "nobody:x:65534:\n"
    "tty:x:5:\n"
    "staff:x:50:\n"
    f"nonroot:x:{NONROOT_UID}:\n"
)
NSSWITCH = (     # Google's distroless file (Debian's default one)
    "# /etc/nsswitch.conf\n"
    "#\n"
    "# Example configuration of GNU Name Service Switch functionality.\n"
    "# If you have the `glibc-doc-reference' and `info' packages installed, try:\n"
    "# `info libc \"Name Service Switch\"' for information about this file.\n"
    "\n"
    "passwd:         compat\n"
    "group:          compat\n"
    "shadow:         compat\n"
    "gshadow:        files\n"
    "\n"
    "hosts:          files dns\n"
    "networks:       files\n"
    "\n"
    "protocols:      db files\n"
    "services:       db files\n"
    "ethers:         db files\n"
    "rpc:            db files\n"
    "\n"
    "netgroup:       nis\n"
)
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
MOZILLA_CERTS = "usr/share/ca-certificates/mozilla"


def write_file(root: Path, rel: str, text: str | bytes, mode: int = 0o644) -> None:
    parent = make_dirs(root, posixpath.dirname("/" + rel))
    path = parent / posixpath.basename(rel)
    if path.is_symlink() or path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)


def _dir(root: Path, rel: str, mode: int, owner: int = 0) -> None:
    path = make_dirs(root, "/" + rel)
    os.lchown(path, owner, owner)
    os.chmod(path, mode)


def link(root: Path, path: str, target: str) -> None:
    """The symlink ``path`` -> ``target`` inside ``root`` (replacing a file there)."""
    parent = make_dirs(root, posixpath.dirname(path))
    host = parent / posixpath.basename(path)
    if host.is_symlink() or host.exists():
        if host.is_dir() and not host.is_symlink():
            raise ArchiveError(f"cannot link {path}: a package made it a directory")
        host.unlink()
    os.symlink(target, host)


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
    """Concatenate the Mozilla certificates of the ca-certificates package unpacked in
    ``root``, sorted by name (what update-ca-certificates makes from the default
    configuration); None without them."""
    certs = resolve_in_root(root, MOZILLA_CERTS)
    if not certs.is_dir():
        return None
    parts = []
    for cert in sorted(certs.glob("*.crt")):
        if cert.is_symlink() or not cert.is_file():
            continue
        data = cert.read_bytes()
        parts.append(data if data.endswith(b"\n") else data + b"\n")
    return b"".join(parts)


def copy_kept(aside: Path, root: Path, keep: tuple[str, ...]) -> None:
    """Copy the ``keep`` paths (files, or directories with what is in them) of a package
    unpacked in ``aside`` into ``root``: directories and regular files only."""
    for rel in keep:
        src = resolve_in_root(aside, "/" + rel, follow_final=False)
        if src.is_symlink() or not src.exists():
            continue
        if src.is_file():
            write_file(root, rel, src.read_bytes(), stat.S_IMODE(src.lstat().st_mode))
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            here = Path(dirpath)
            sub = os.path.relpath(here, src)
            inside = rel if sub == "." else posixpath.join(rel, sub)
            _dir(root, inside, stat.S_IMODE(here.lstat().st_mode))
            dirnames.sort()
            for name in sorted(filenames):
                path = here / name
                if path.is_file() and not path.is_symlink():
                    write_file(root, f"{inside}/{name}", path.read_bytes(),
                               stat.S_IMODE(path.lstat().st_mode))


def add_distroless_files(root: Path, *, version_id: str, codename: str, debug: bool,
                         certificates: Path) -> bytes | None:
    """passwd, group, nsswitch.conf, os-release, the home directories, the CA bundle
    (from ca-certificates unpacked in ``certificates``; returned) and, in :debug,
    busybox."""
    write_file(root, "etc/passwd", PASSWD)
    write_file(root, "etc/group", GROUP)
    write_file(root, "etc/nsswitch.conf", NSSWITCH)
    write_file(root, "usr/lib/os-release", os_release(version_id, codename))
    link(root, "/etc/os-release", "../usr/lib/os-release")   # as base-files has it
    _dir(root, "tmp", 0o1777)
    _dir(root, "root", 0o700)
    _dir(root, "home", 0o755)
    _dir(root, "home/nonroot", 0o700, NONROOT_UID)
    bundle = ca_bundle(certificates)
    if bundle is not None:
        write_file(root, CA_BUNDLE, bundle)
    if debug:
        add_busybox(root)
    return bundle


#: Where Debian's busybox-static puts busybox, and where Google's debug images have it.
_DEBIAN_BUSYBOX = "/bin/busybox"
BUSYBOX_DIR = "/busybox"
_APPLET = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}\Z")


def busybox_applets(binary: bytes) -> list[str]:
    """The applets a busybox binary has, read from its table of names (one NUL-ended
    name after another, sorted, starting with "[" and "[["), as ``busybox --list``
    prints them, without running it (the image may be for another architecture)."""
    start = binary.find(b"[\0[[\0")
    if start < 0 or binary.find(b"[\0[[\0", start + 1) >= 0:
        raise ArchiveError("busybox: cannot find its table of applets")
    names = []
    for raw in binary[start:].split(b"\0"):
        if not raw:
            break
        name = raw.decode("ascii", "replace")
        if not _APPLET.match(name) or name in (".", ".."):
            raise ArchiveError(f"busybox: unexpected applet name {name!r}")
        names.append(name)
    return names


def add_busybox(root: Path) -> None:
    """Move busybox to /busybox/busybox and link every applet there to it, as Google's
    :debug images have it (nothing is linked outside /busybox: no /bin/sh)."""
    src = resolve_in_root(root, _DEBIAN_BUSYBOX, follow_final=False)
    if not src.is_file() or src.is_symlink():
        raise ArchiveError(f"busybox-static has no {_DEBIAN_BUSYBOX}")
    directory = make_dirs(root, BUSYBOX_DIR)
    binary = directory / "busybox"
    os.rename(src, binary)
    for applet in busybox_applets(binary.read_bytes()):
        if applet != "busybox":
            link(root, f"{BUSYBOX_DIR}/{applet}", f"{BUSYBOX_DIR}/busybox")


def write_status(root: Path, package: str, control: str, md5sums: bytes | None) -> None:
    """/var/lib/dpkg/status.d/<package> (+ .md5sums): the database scanners read."""
    status = root / "var/lib/dpkg/status.d"
    write_file(root, f"{status.relative_to(root)}/{package}",
           control if control.endswith("\n") else control + "\n")
    if md5sums:
        write_file(root, f"{status.relative_to(root)}/{package}.md5sums", md5sums)
