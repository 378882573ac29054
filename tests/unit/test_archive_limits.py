"""distill.limits: archives cannot expand without bound (sparse members, bombs, huge
headers, too many entries, over-long names), and every unpacker stops with a clean error."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from distill.errors import DistillError, ImageError
from distill.formats.layers import compute_diff_id
from distill.limits import ArchiveLimitError, ArchiveLimits, LimitedReader, open_tar
from distill.oci import mediatypes as mt
from distill.sandbox.layers import extract_layer

SMALL = ArchiveLimits(max_bytes=1 << 20, max_ratio=8, ratio_grace=64 << 10,
                      max_entries=10, max_path=200, max_component=50)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x", **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _sparse_tar(tmp_path: Path, fmt: str) -> Path:
    """GNU tar's own sparse archive of a 300 MiB file with one byte of data."""
    work = tmp_path / f"sparse-{fmt}"
    work.mkdir()
    big = work / "big"
    with open(big, "wb") as f:
        f.truncate(300 << 20)
        f.seek(150 << 20)
        f.write(b"!")
    out = tmp_path / f"sparse-{fmt}.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(out), "-C", str(work),
                    "big"], check=True)
    assert out.stat().st_size < 64 << 10, "the archive itself is tiny"
    return out


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_members_are_refused(tmp_path: Path, fmt: str) -> None:
    archive = _sparse_tar(tmp_path, fmt)
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(archive, "rb") as f, pytest.raises(ArchiveLimitError, match="sparse"):
        extract_layer(f, dest)
    assert not (dest / "big").exists()


def test_gzip_bomb_stops_at_the_ratio(tmp_path: Path) -> None:
    # 4 MiB of zeros gzip to ~4 KiB: far past 8x once 64 KiB are out
    bomb = gzip.compress(_tar(_file("zeros", bytes(4 << 20))), compresslevel=9)
    with pytest.raises(ArchiveLimitError, match="expands more than 8 times"):
        compute_diff_id(io.BytesIO(bomb), mt.OCI_LAYER_GZIP, "layer bomb", SMALL)


def test_gzip_bomb_stops_at_the_absolute_cap() -> None:
    limits = ArchiveLimits(max_bytes=1 << 20)
    data = gzip.compress(_tar(_file("zeros", bytes(2 << 20))))
    with pytest.raises(ArchiveLimitError, match="expands to more than 1 MiB"):
        compute_diff_id(io.BytesIO(data), mt.OCI_LAYER_GZIP, "layer big", limits)


def test_a_declared_size_past_the_cap_is_refused_before_it_is_written(tmp_path: Path) -> None:
    info = tarfile.TarInfo("huge")
    info.size = 40 << 30
    header = info.tobuf(tarfile.PAX_FORMAT)  # the header alone: no data follows
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveLimitError, match="huge"):
        extract_layer(io.BytesIO(header + bytes(1024)), dest)
    assert not (dest / "huge").exists()


def test_ordinary_archives_pass_under_small_limits() -> None:
    data = _tar(_file("a", os.urandom(1000)), _file("b", os.urandom(1000)))
    with open_tar(io.BytesIO(data), "ok", limits=SMALL) as tar:
        assert [m.name for m in tar] == ["a", "b"]


@pytest.mark.parametrize(("members", "needle"), [
    ([_file(f"f{i}") for i in range(11)], "more than 10 entries"),
    ([_file("d/" * 120 + "f")], "name is"),
    ([_file("x" * 60)], "path component"),
    ([_file("l", b"", type=tarfile.LNKTYPE, linkname="y" * 60)], "path component"),
    ([_file("u", uid=1 << 40)], "invalid uid"),
    ([_file("g", gid=-5)], "invalid gid"),
])
def test_member_limits(members: list[tuple[tarfile.TarInfo, bytes]], needle: str) -> None:
    reader = LimitedReader(io.BytesIO(_tar(*members)), "archive X", limits=SMALL)
    with pytest.raises(ArchiveLimitError, match=needle) as err, \
            open_tar(reader, "archive X", limits=SMALL) as tar:
        for _ in tar:
            pass
    assert "archive X" in err.value.message


def test_default_path_limits_in_a_layer(tmp_path: Path) -> None:
    """A component over NAME_MAX is a clean error, not ENAMETOOLONG from the kernel."""
    dest = tmp_path / "dest"
    dest.mkdir()
    data = _tar(_file("ok"), _file("n" * 300))
    with pytest.raises(ArchiveLimitError, match="300 bytes"):
        extract_layer(io.BytesIO(data), dest)


def test_a_whiteout_of_a_longest_name_is_allowed(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_layer(io.BytesIO(_tar(_file(".wh." + "w" * 255, b""))), dest)
    assert os.lstat(dest / ("w" * 255)).st_rdev == 0


def test_nan_mtime_and_a_nul_name_are_clean(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    info, body = _file("when", b"t")
    info.pax_headers = {"mtime": "nan"}
    extract_layer(io.BytesIO(_tar((info, body))), dest)
    assert (dest / "when").read_bytes() == b"t"
    bad, body = _file("ok")
    bad.pax_headers = {"path": "a\0b"}
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    with pytest.raises(DistillError):
        extract_layer(io.BytesIO(_tar((bad, body))), dest2)


def test_labelled_gzip_but_not_gzip() -> None:
    with pytest.raises(ImageError, match="not valid gzip"):
        compute_diff_id(io.BytesIO(b"plain text, no gzip" * 50), mt.OCI_LAYER_GZIP,
                        "layer L")
    truncated = gzip.compress(_tar(_file("a", os.urandom(5000))))[:-40]
    with pytest.raises(ImageError, match="not valid gzip"):
        compute_diff_id(io.BytesIO(truncated), mt.OCI_LAYER_GZIP, "layer L")


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("first", [True, False])
def test_an_extended_header_over_one_mib_is_refused_before_it_is_read(
        fmt: int, first: bool) -> None:
    """Regression (hostile corpus): tarfile read a PAX or GNU long-name header whole into
    memory before any limit saw its member (64 MiB cost 300 MB). Refused as Go's
    archive/tar refuses it, whether it is the stream's first member or a later one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        if not first:
            tar.addfile(tarfile.TarInfo("ok"), io.BytesIO(b""))
        tar.addfile(tarfile.TarInfo("a/" * (600 << 10) + "x"), io.BytesIO(b""))
    with pytest.raises(ArchiveLimitError, match="extended header of 1.172 MiB"):
        for _ in open_tar(io.BytesIO(buf.getvalue()), "the layer"):
            pass
