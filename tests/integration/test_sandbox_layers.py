"""extract_layer and write_layer_from_upper on a real filesystem (needs root:
lchown, mknod, trusted.* xattrs)."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from distill.errors import ImageError
from distill.sandbox import extract_layer, write_layer_from_upper

pytestmark = pytest.mark.integration

CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def make_tar(*entries: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def entry(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def read_tar(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        return tar.getmembers()


def test_extract_types_modes_owners_times(tmp_path: Path) -> None:
    cap = CAP.decode("utf-8", "surrogateescape")
    layer = make_tar(
        (entry("dir/", tarfile.DIRTYPE, mode=0o750, mtime=1_500_000_000, uid=7, gid=8), None),
        (entry("dir/suid", mode=0o4755, uid=1000, gid=1000, mtime=1_400_000_000), b"#!x\n"),
        (entry("dir/sticky/", tarfile.DIRTYPE, mode=0o1777), None),
        (entry("dir/cap", pax_headers={"SCHILY.xattr.security.capability": cap}), b"c"),
        (entry("dir/user", pax_headers={"SCHILY.xattr.user.note": "hello"}), b"u"),
        (entry("dir/sneaky", pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"}), b""),
        (entry("link", tarfile.SYMTYPE, linkname="/etc/passwd", mtime=1_300_000_000), None),
        (entry("hard", tarfile.LNKTYPE, linkname="dir/suid"), None),
        (entry("fifo", tarfile.FIFOTYPE, mode=0o640), None),
        (entry("null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3), None),
    )
    extract_layer(layer, tmp_path)

    d = os.lstat(tmp_path / "dir")
    assert stat.S_IMODE(d.st_mode) == 0o750 and (d.st_uid, d.st_gid) == (7, 8)
    assert d.st_mtime == 1_500_000_000  # applied after its children were created
    suid = os.lstat(tmp_path / "dir/suid")
    assert stat.S_IMODE(suid.st_mode) == 0o4755
    assert (suid.st_uid, suid.st_gid, suid.st_mtime) == (1000, 1000, 1_400_000_000)
    assert (tmp_path / "dir/suid").read_bytes() == b"#!x\n"
    assert stat.S_IMODE(os.lstat(tmp_path / "dir/sticky").st_mode) == 0o1777
    assert os.getxattr(tmp_path / "dir/cap", "security.capability") == CAP
    assert os.getxattr(tmp_path / "dir/user", "user.note") == b"hello"
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "dir/sneaky")
    assert os.readlink(tmp_path / "link") == "/etc/passwd"
    assert os.lstat(tmp_path / "link").st_mtime == 1_300_000_000
    assert os.lstat(tmp_path / "hard").st_ino == suid.st_ino
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    null = os.lstat(tmp_path / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)


def test_extract_whiteouts_and_opaque(tmp_path: Path) -> None:
    layer = make_tar(
        (entry("etc/.wh.gone"), b""),
        (entry("var/", tarfile.DIRTYPE), None),
        (entry("var/.wh..wh..opq"), b""),
        (entry("var/kept"), b"k"),
        (entry(".wh..wh.plnk"), b""),
    )
    extract_layer(layer, tmp_path)
    gone = os.lstat(tmp_path / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(tmp_path / "var", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path)) == ["etc", "var"]
    assert os.listdir(tmp_path / "var") == ["kept"]


def test_extract_normalises_names_and_later_entries_win(tmp_path: Path) -> None:
    layer = make_tar(
        (entry("/abs"), b"1"),
        (entry("./rel/./x"), b"2"),
        (entry("swap"), b"file"),
        (entry("swap/", tarfile.DIRTYPE), None),
        (entry("swap/in"), b"3"),
    )
    extract_layer(layer, tmp_path)
    assert (tmp_path / "abs").read_bytes() == b"1"
    assert (tmp_path / "rel/x").read_bytes() == b"2"
    assert stat.S_IMODE(os.lstat(tmp_path / "rel").st_mode) == 0o755
    assert (tmp_path / "swap/in").read_bytes() == b"3"


@pytest.mark.parametrize(
    "bad",
    [
        (entry("../escape"), b"x"),
        (entry("a/../../escape"), b"x"),
        (entry("h", tarfile.LNKTYPE, linkname="../escape"), None),
    ],
    ids=["parent", "nested-parent", "hardlink-target"],
)
def test_extract_rejects_dotdot(tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None]) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "escape").write_bytes(b"outside")
    with pytest.raises(ImageError, match=r"\.\."):
        extract_layer(make_tar(bad), dest)
    assert (tmp_path / "escape").read_bytes() == b"outside"


def test_extract_never_writes_through_symlinks(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    layer = make_tar(
        (entry("link", tarfile.SYMTYPE, linkname=str(outside)), None),
        (entry("link/pwned"), b"x"),
    )
    with pytest.raises(ImageError, match="symlink"):
        extract_layer(layer, dest)
    assert list(outside.iterdir()) == []


def test_extract_hardlink_through_symlink_rejected(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    layer = make_tar(
        (entry("link", tarfile.SYMTYPE, linkname=str(outside)), None),
        (entry("h", tarfile.LNKTYPE, linkname="link/secret"), None),
    )
    with pytest.raises(ImageError, match="symlink"):
        extract_layer(layer, dest)
    assert not (dest / "h").exists()


def make_upper(root: Path) -> None:
    """An overlay upper dir as overlayfs would leave it, built by hand."""
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"tool")
    os.chmod(root / "bin/tool", 0o4755)
    os.setxattr(root / "bin/tool", "security.capability", CAP)
    os.link(root / "bin/tool", root / "bin/tool2")
    os.symlink("tool", root / "bin/alias")
    os.mknod(root / "bin/gone", stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(root / "bin/gone2", stat.S_IFCHR, os.makedev(0, 0))
    (root / "opq").mkdir(mode=0o700)
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "opq", "trusted.overlay.origin", b"\x00junk")
    (root / "opq/new").write_bytes(b"n")
    os.chown(root / "opq/new", 1000, 1001)
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)


class WriteOnly(io.RawIOBase):
    """A pipe-like sink: no seek, no tell."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def test_write_layer_from_upper(tmp_path: Path) -> None:
    make_upper(tmp_path)
    sink = WriteOnly()
    write_layer_from_upper(tmp_path, sink)  # type: ignore[arg-type]
    members = read_tar(bytes(sink.data))
    names = [m.name for m in members]
    assert names == [
        "bin",
        "bin/alias",
        "bin/.wh.gone",
        "bin/.wh.gone2",
        "bin/tool",
        "bin/tool2",
        "fifo",
        "opq",
        "opq/.wh..wh..opq",
        "opq/new",
    ]
    by = {m.name: m for m in members}
    assert by["bin"].isdir() and by["opq"].isdir()
    assert by["bin/.wh.gone"].isreg() and by["bin/.wh.gone"].size == 0
    assert by["bin/.wh.gone2"].isreg()  # overlayfs shares one whiteout inode: not a hardlink
    assert by["bin/tool"].isreg() and by["bin/tool"].mode == 0o4755
    assert (
        by["bin/tool"]
        .pax_headers["SCHILY.xattr.security.capability"]
        .encode("utf-8", "surrogateescape")
        == CAP
    )
    assert by["bin/tool2"].islnk() and by["bin/tool2"].linkname == "bin/tool"
    assert by["bin/alias"].issym() and by["bin/alias"].linkname == "tool"
    assert by["fifo"].isfifo()
    assert by["opq/.wh..wh..opq"].isreg()
    assert (by["opq/new"].uid, by["opq/new"].gid) == (1000, 1001)
    for m in members:
        assert m.uname == "" and m.gname == "" and m.mtime == 1_700_000_000
        assert not any(k.startswith("SCHILY.xattr.trusted.") for k in m.pax_headers)
    assert b"./bin" not in sink.data and b"bin/\x00" in sink.data  # dirs end with "/"


def test_write_is_deterministic_and_clamps_mtime(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    make_upper(up)
    unclamped = io.BytesIO()
    write_layer_from_upper(up, unclamped, mtime_clamp=1_800_000_000)
    assert {m.mtime for m in read_tar(unclamped.getvalue())} == {1_700_000_000}
    first, second = io.BytesIO(), io.BytesIO()
    write_layer_from_upper(up, first, mtime_clamp=1_650_000_000)
    write_layer_from_upper(up, second, mtime_clamp=1_650_000_000)
    assert first.getvalue() == second.getvalue()
    assert {m.mtime for m in read_tar(first.getvalue())} == {1_650_000_000}
    # the clamp holds in the directory too (it becomes the snapshot later steps see)
    # (sockets are no part of a layer)
    assert {os.lstat(p).st_mtime_ns for p in up.rglob("*") if not p.is_socket()} == \
        {1_650_000_000 * 10**9}


def test_sub_second_times_are_kept(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.utime(tmp_path / "f", ns=(1, 1_700_000_000_123456789))
    out = io.BytesIO()
    write_layer_from_upper(tmp_path, out)
    (member,) = read_tar(out.getvalue())
    assert member.pax_headers["mtime"] == "1700000000.123456789"


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a layer should preserve, per relative path."""
    result: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        kind = stat.S_IFMT(st.st_mode)
        content: object = None
        if stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        xattrs = {
            n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
            if n != "trusted.overlay.origin"
        }
        mtime = None if stat.S_ISDIR(st.st_mode) and rel == "." else st.st_mtime
        result[rel] = (
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_rdev,
            mtime,
            content,
            xattrs,
            st.st_nlink if not stat.S_ISCHR(st.st_mode) else 0,
        )
    return result


def test_round_trip(tmp_path: Path) -> None:
    upper, dest = tmp_path / "upper", tmp_path / "dest"
    upper.mkdir()
    dest.mkdir()
    make_upper(upper)
    os.unlink(upper / "sock")
    (upper / "dev").mkdir()
    os.mknod(upper / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.utime(upper / "dev/null", (1_700_000_000, 1_700_000_000))
    os.utime(upper / "dev", (1_700_000_000, 1_700_000_000))
    layer = io.BytesIO()
    write_layer_from_upper(upper, layer)
    layer.seek(0)
    extract_layer(layer, dest)
    assert snapshot(dest) == snapshot(upper)
