"""The layer tar writer: fields ustar cannot hold go to PAX records; GNU tar and Python agree."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from distill.limits import MAX_TIME_NS, member_time_ns
from distill.sandbox._tarstream import DIR, REG, SYM, TarStream

LONG_DIR = "/".join(["d" * 60] * 4)
LONG_NAME = LONG_DIR + "/" + "f" * 150


def _archive() -> bytes:
    out = io.BytesIO()
    tar = TarStream(out)
    tar.add("a/", DIR, mode=0o755, mtime=1)
    r, w = os.pipe()
    os.write(w, b"hello")
    os.close(w)
    tar.add_file("a/hello", r, 5, mode=0o4755, uid=1000, gid=1000, mtime=2)
    os.close(r)
    tar.add(LONG_NAME, REG, mtime=3)
    tar.add("ünïcode", REG, uid=3_000_000, gid=7, mtime=4)
    tar.add("link", SYM, linkname="t" * 150, mode=0o777)
    tar.add("cap", REG, xattrs={"security.capability": b"\x01\x00\x00\x02"})
    tar.close()
    return out.getvalue()


def test_python_tarfile_reads_every_field() -> None:
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(_archive()))}
    assert set(members) == {"a", "a/hello", LONG_NAME, "ünïcode", "link", "cap"}
    hello = members["a/hello"]
    assert (hello.mode, hello.uid, hello.gid, hello.size, hello.mtime) == (0o4755, 1000, 1000, 5, 2)
    assert members["ünïcode"].uid == 3_000_000
    assert members["link"].linkname == "t" * 150
    assert members["cap"].pax_headers["SCHILY.xattr.security.capability"] == "\x01\x00\x00\x02"


def test_gnu_tar_lists_the_same(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(_archive())
    listing = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert listing == ["a/", "a/hello", LONG_NAME, "ünïcode", "link", "cap"]
    subprocess.run(["tar", "-xf", str(path), "-C", str(tmp_path)], check=True)
    assert (tmp_path / "a" / "hello").read_bytes() == b"hello"


def test_sub_second_times_are_a_pax_record_and_whole_seconds_are_not() -> None:
    out = io.BytesIO()
    tar = TarStream(out)
    tar.add("frac", REG, mtime=1577934245, mtime_ns=1577934245_123456789)
    tar.add("tenth", REG, mtime=1577934245, mtime_ns=1577934245_100000000)
    tar.add("whole", REG, mtime=1577934245, mtime_ns=1577934245_000000000)
    tar.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        members = {m.name: m for m in t}
    assert members["frac"].pax_headers == {"mtime": "1577934245.123456789"}
    assert members["tenth"].pax_headers == {"mtime": "1577934245.1"}  # as Go writes it
    assert members["whole"].pax_headers == {} and members["whole"].mtime == 1577934245
    # read back exactly (tarfile's float alone would lose the last digits)
    assert member_time_ns(members["frac"]) == 1577934245_123456789
    assert int(members["frac"].mtime * 1_000_000_000) != 1577934245_123456789


def test_member_times_from_hostile_pax_records() -> None:
    def member(**pax: str) -> tarfile.TarInfo:
        m = tarfile.TarInfo("x")
        m.mtime = 7
        m.pax_headers = pax
        return m

    assert member_time_ns(member(mtime="-1.5")) == -1_500_000_000
    assert member_time_ns(member(mtime="1.1234567899")) == 1_123456789
    assert member_time_ns(member(mtime="nan")) == 0
    assert member_time_ns(member(mtime="9" * 19)) == MAX_TIME_NS
    assert member_time_ns(member(mtime="2", atime="nan"), "atime") == 2_000_000_000
    assert member_time_ns(member(), "atime") == 7_000_000_000
