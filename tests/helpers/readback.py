"""Read distill's outputs back with tools that share no code with it, and describe trees.

Integration tests use these: an image is right only if independent readers (skopeo and
umoci, from Debian) see what we meant to write. ``tree_snapshot`` turns a directory into
plain data so two root filesystems can be compared with ``==``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


class ToolError(RuntimeError):
    """An external tool exited non-zero; the message holds its command line and stderr."""


def _run(argv: list[str]) -> bytes:
    """Run a tool, returning its stdout; raise ToolError with its stderr if it fails."""
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise ToolError(f"{' '.join(argv)} exited {proc.returncode}: {stderr}")
    return proc.stdout


def skopeo_inspect(oci_layout_dir: Path, ref: str) -> dict[str, Any]:
    """What skopeo reads from ``oci:DIR:REF``.

    Returns ``{"manifest": ..., "manifest_digest": "sha256:...", "config": ...}``: the raw
    manifest (or index) parsed, the digest of its exact bytes, and the image config.
    """
    image = f"oci:{oci_layout_dir}:{ref}"
    raw = _run(["skopeo", "inspect", "--raw", image])
    config = _run(["skopeo", "inspect", "--config", image])
    return {
        "manifest": json.loads(raw),
        "manifest_digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "config": json.loads(config),
    }


def skopeo_copy(src: str, dst: str, *options: str) -> None:
    """``skopeo copy [OPTIONS] SRC DST`` for transport references such as ``oci:DIR:REF``.

    Runs with ``--insecure-policy`` so that no machine-wide policy.json is needed.
    """
    _run(["skopeo", "--insecure-policy", "copy", "--quiet", *options, src, dst])


def umoci_unpack(layout_dir: Path, ref: str, dest_bundle: Path) -> Path:
    """Unpack ``DIR:REF`` into a runtime bundle with umoci; return the bundle's rootfs.

    Meant to run as root, so owners and modes are applied exactly; as another user it
    falls back to ``--rootless``.
    """
    argv = ["umoci", "unpack"]
    if os.geteuid() != 0:
        argv.append("--rootless")
    _run([*argv, "--image", f"{layout_dir}:{ref}", str(dest_bundle)])
    return Path(dest_bundle) / "rootfs"


def tree_snapshot(rootfs: Path) -> dict[str, dict[str, Any]]:
    """Describe every path under ``rootfs``, the root itself included as ``"."``.

    Keys are paths relative to the root (``"etc/passwd"``). Each value has the same keys:
    ``type`` (file, dir, symlink, char, block, fifo, socket), ``mode`` (permission bits
    with setuid/setgid/sticky), ``uid``, ``gid``, ``size`` (bytes of a file, length of a
    symlink's target, else 0), ``sha256`` (files), ``target`` (symlinks), ``rdev``
    (``"major:minor"`` of device nodes) and ``hardlink``: for paths sharing one inode, the
    alphabetically first of them, so that groups compare equal across trees; else None.
    Nothing is followed across symlinks and nothing is excluded.
    """
    root = Path(rootfs)
    snapshot: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, path in _walk(root):
        st = os.lstat(path)
        snapshot[rel] = _describe(path, st)
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for names in inodes.values():
        if len(names) > 1:
            for name in names:
                snapshot[name]["hardlink"] = min(names)
    return snapshot


def _walk(root: Path) -> Iterator[tuple[str, str]]:
    """(relative path, absolute path) of the root and everything below it, sorted by name."""
    yield ".", str(root)
    stack = [("", str(root))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = prefix + entry.name
            yield rel, entry.path
            if entry.is_dir(follow_symlinks=False):
                stack.append((rel + "/", entry.path))


def _describe(path: str, st: os.stat_result) -> dict[str, Any]:
    """One snapshot entry from an lstat result."""
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
    entry: dict[str, Any] = {
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size if kind in ("file", "symlink") else 0,
        "sha256": _sha256_file(path) if kind == "file" else None,
        "target": os.readlink(path) if kind == "symlink" else None,
        "rdev": None,
        "hardlink": None,
    }
    if kind in ("char", "block"):
        entry["rdev"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return entry


def _sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
