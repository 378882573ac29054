"""DebFile on real .deb files built with dpkg-deb, and on broken ones."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from distill.debian.deb import DebFile
from distill.errors import ArchiveError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                reason="dpkg-deb is not installed")

CONTROL = """\
Package: hello-distill
Version: 1.0-1
Architecture: all
Maintainer: Distill Tests <tests@example.org>
Description: a package for tests
 It has a long description.
"""
BIG = os.urandom(1 << 20)  # incompressible: the data tarball spans many reads


def build_deb(tmp: Path, compression: str) -> Path:
    root = tmp / f"root-{compression}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(CONTROL)
    (root / "DEBIAN" / "conffiles").write_text("/etc/hello.conf\n")
    (root / "etc").mkdir()
    (root / "etc" / "hello.conf").write_text("greeting = hello\n")
    (root / "usr" / "share" / "hello").mkdir(parents=True)
    (root / "usr" / "share" / "hello" / "big.bin").write_bytes(BIG)
    (root / "usr" / "share" / "hello" / "link").symlink_to("big.bin")
    md5 = hashlib.md5(b"greeting = hello\n").hexdigest()
    (root / "DEBIAN" / "md5sums").write_text(f"{md5}  etc/hello.conf\n")
    out = tmp / f"hello-{compression}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build",
                    str(root), str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_control_and_streamed_data(tmp_path: Path, compression: str) -> None:
    path = build_deb(tmp_path, compression)
    with DebFile(path) as deb:
        assert deb.control() == CONTROL
        assert deb.control_member("conffiles") == b"/etc/hello.conf\n"
        assert deb.control_member("./md5sums") is not None
        assert deb.control_member("postinst") is None
        found: dict[str, bytes | str] = {}
        with tarfile.open(fileobj=deb.data_tar(), mode="r|") as tar:
            for info in tar:
                if info.isfile():
                    f = tar.extractfile(info)
                    assert f is not None
                    found[info.name] = f.read()
                elif info.issym():
                    found[info.name] = info.linkname
                assert (info.uid, info.gid) == (0, 0)
        assert found["./etc/hello.conf"] == b"greeting = hello\n"
        assert found["./usr/share/hello/big.bin"] == BIG
        assert found["./usr/share/hello/link"] == "big.bin"
        # Each call gives a fresh stream from the start.
        assert deb.data_tar().read(512)[:2] == b"./"


def test_data_tar_is_a_stream_of_bounded_reads(tmp_path: Path) -> None:
    with DebFile(build_deb(tmp_path, "xz")) as deb:
        stream = deb.data_tar()
        total = 0
        while chunk := stream.read(4096):
            assert len(chunk) <= 4096
            total += len(chunk)
        assert total > len(BIG)


def _members(path: Path) -> list[tuple[str, int, int]]:
    """(name, header offset, size) of each ar member."""
    data = path.read_bytes()
    out, pos = [], 8
    while pos < len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58])
        out.append((name, pos, size))
        pos += 60 + size + (size & 1)
    return out


def test_malformed_archives_are_archive_errors(tmp_path: Path) -> None:
    good = build_deb(tmp_path, "xz")
    data = good.read_bytes()
    cases = {
        "not-ar": b"PK\x03\x04 not an ar archive",
        "truncated": data[: len(data) // 2],
        "bad-header": data[:8] + b"x" * 60 + data[68:],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.deb"
        path.write_bytes(content)
        with pytest.raises(ArchiveError):
            DebFile(path)
    with pytest.raises(ArchiveError, match="cannot open"):
        DebFile(tmp_path / "missing.deb")


def test_members_out_of_order_or_unknown_are_refused(tmp_path: Path) -> None:
    good = build_deb(tmp_path, "gzip")
    data = good.read_bytes()
    (_, b_off, _), (_, c_off, _), (_, d_off, _) = _members(good)
    binary = data[b_off:c_off]
    control = data[c_off:d_off]
    datamember = data[d_off:]
    swapped = tmp_path / "swapped.deb"
    swapped.write_bytes(b"!<arch>\n" + binary + datamember + control)
    with pytest.raises(ArchiveError, match="misplaced"):
        DebFile(swapped)
    no_binary = tmp_path / "no-binary.deb"
    no_binary.write_bytes(b"!<arch>\n" + control + datamember)
    with pytest.raises(ArchiveError, match="debian-binary"):
        DebFile(no_binary)
    unknown = tmp_path / "unknown.deb"
    renamed = b"evil.tar.gz     " + control[16:]
    unknown.write_bytes(b"!<arch>\n" + binary + renamed + datamember)
    with pytest.raises(ArchiveError, match="unexpected member 'evil.tar.gz'"):
        DebFile(unknown)
    ignored = tmp_path / "ignored.deb"
    extra = b"_extra          " + b"0           0     0     100644  2         `\n" + b"hi"
    ignored.write_bytes(b"!<arch>\n" + binary + extra + control + datamember)
    with DebFile(ignored) as deb:  # members starting with "_" are ignored (deb(5))
        assert deb.control() == CONTROL


def test_corrupt_compressed_data_is_an_archive_error(tmp_path: Path) -> None:
    good = build_deb(tmp_path, "xz")
    data = bytearray(good.read_bytes())
    *_, (_, d_off, d_size) = _members(good)
    data[d_off + 60 + d_size // 2] ^= 0xFF
    bad = tmp_path / "corrupt.deb"
    bad.write_bytes(bytes(data))
    with DebFile(bad) as deb:
        assert deb.control() == CONTROL
        stream = deb.data_tar()
        with pytest.raises(ArchiveError, match="data.tar.xz"):
            while stream.read(1 << 16):
                pass
