"""A local copy of a slice of the real Debian archive, served over HTTP on 127.0.0.1.

``build_local_mirror`` downloads the real ``dists/SUITE/InRelease``, the amd64
``Packages.xz`` it signs (through by-hash, so the two always match) and a few .debs into
the archive's layout. Nothing is verified here: verifying is the job of the code under
test. ``LocalMirror`` serves the copy with ``http.server`` on a random port and can
tamper with its files (and put them back).
"""

from __future__ import annotations

import lzma
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

UPSTREAM = "http://deb.debian.org/debian"
SUITE = "bookworm"
ARCH = "amd64"
PACKAGES_XZ = f"dists/{SUITE}/main/binary-{ARCH}/Packages.xz"
INRELEASE = f"dists/{SUITE}/InRelease"
# Small packages whose closure (with debconf excluded) is exactly this set.
DEBS = ("base-files", "netbase", "tzdata", "media-types", "mawk", "libc6", "libgcc-s1",
        "gcc-12-base")


def build_local_mirror(root: Path, debs: Sequence[str] = DEBS, *,
                       upstream: str = UPSTREAM) -> Path:
    """Copy InRelease, Packages.xz and ``debs`` from ``upstream`` into ``root``."""
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        inrelease = _get(client, f"{upstream}/{INRELEASE}")
        _write(root / INRELEASE, inrelease)
        match = re.search(rb"^ ([0-9a-f]{64}) +\d+ main/binary-" + ARCH.encode()
                          + rb"/Packages\.xz$", inrelease.split(b"SHA256:", 1)[1], re.MULTILINE)
        assert match is not None, "InRelease lists no Packages.xz"
        by_hash = f"dists/{SUITE}/main/binary-{ARCH}/by-hash/SHA256/{match[1].decode()}"
        packages_xz = _get(client, f"{upstream}/{by_hash}")
        _write(root / PACKAGES_XZ, packages_xz)
        filenames = _filenames(lzma.decompress(packages_xz).decode(), set(debs))
        missing = set(debs) - set(filenames)
        assert not missing, f"not in {SUITE}: {sorted(missing)}"
        for name in debs:
            _write(root / filenames[name], _get(client, f"{upstream}/{filenames[name]}"))
    return root


def _filenames(packages: str, names: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for paragraph in packages.split("\n\n"):
        name = re.search(r"^Package: (\S+)$", paragraph, re.MULTILINE)
        arch = re.search(r"^Architecture: (\S+)$", paragraph, re.MULTILINE)
        filename = re.search(r"^Filename: (\S+)$", paragraph, re.MULTILINE)
        if name and arch and filename and name[1] in names and arch[1] in (ARCH, "all"):
            found[name[1]] = filename[1]
    return found


def _get(client: httpx.Client, url: str) -> bytes:
    response = client.get(url)
    response.raise_for_status()
    return response.content


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalMirror:
    """A served mirror directory: ``url``, ``deb_path(name)``, tampering and restoring."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self._originals: dict[Path, bytes] = {}

    def path(self, rel: str) -> Path:
        return self.root / rel

    def deb_path(self, name: str) -> str:
        """The mirror-relative path of the .deb of package ``name``."""
        (found,) = [p for p in self.root.glob("pool/**/*.deb") if p.name.startswith(name + "_")]
        return str(found.relative_to(self.root))

    def flip_byte(self, rel: str, offset: int | None = None) -> None:
        """Change one byte of ``rel`` (the middle one unless ``offset`` is given)."""
        data = bytearray(self._keep(rel))
        at = len(data) // 2 if offset is None else offset
        data[at] ^= 0x01
        self.path(rel).write_bytes(bytes(data))

    def replace(self, rel: str, old: bytes, new: bytes) -> None:
        """Replace the first occurrence of ``old`` in ``rel`` with ``new``."""
        data = self._keep(rel)
        assert old in data, f"{old!r} not in {rel}"
        self.path(rel).write_bytes(data.replace(old, new, 1))

    def restore(self) -> None:
        """Put every tampered file back as it was downloaded."""
        for path, data in self._originals.items():
            path.write_bytes(data)
        self._originals.clear()

    def _keep(self, rel: str) -> bytes:
        path = self.path(rel)
        data = self._originals.get(path)
        if data is None:
            data = self._originals[path] = path.read_bytes()
        return data


@contextmanager
def serve_mirror(root: Path) -> Iterator[LocalMirror]:
    """Serve ``root`` on 127.0.0.1 (a random port) from a thread until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="local-mirror", daemon=True)
    thread.start()
    mirror = LocalMirror(root, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield mirror
    finally:
        mirror.restore()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
