"""Go build info read from ELF binaries: a real binary built here with the installed Go
toolchain (compared with ``go version -m``), synthetic binaries in the pre-1.18 pointer
format, and garbled input, which must read as None, never raise."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from distill.report.goinfo import (
    BUILDINFO_MAGIC,
    GoBuildInfo,
    GoCollector,
    GoModule,
    parse_modinfo,
    read_buildinfo,
)
from distill.report.layerfiles import Entry

START = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
END = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"


def go_tool() -> str:
    """The Go toolchain; its absence is a failure, not a skip."""
    found = shutil.which("go") or ("/usr/lib/go/bin/go"
                                   if os.path.exists("/usr/lib/go/bin/go") else None)
    if found is None:
        pytest.fail("the go toolchain is needed (Debian package golang-go)")
    return found


def build_go_binary(root: Path) -> Path:
    """A module with one dependency replaced by a local directory, built offline."""
    (root / "dep").mkdir()
    (root / "dep" / "go.mod").write_text("module example.com/dep\n\ngo 1.18\n")
    (root / "dep" / "dep.go").write_text('package dep\n\nfunc Hello() string { return "hi" }\n')
    (root / "app").mkdir()
    (root / "app" / "go.mod").write_text(
        "module example.com/app\n\ngo 1.18\n\nrequire example.com/dep v1.2.3\n\n"
        "replace example.com/dep => ../dep\n")
    (root / "app" / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/dep"\n)\n\n'
        "func main() { fmt.Println(dep.Hello()) }\n")
    out = root / "app.bin"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
           "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local",
           "CGO_ENABLED": "0", "GOCACHE": str(root / "cache"),
           "GOPATH": str(root / "gopath")}
    subprocess.run([go_tool(), "build", "-ldflags=-s -w", "-o", str(out), "."],
                   cwd=root / "app", env=env, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_binary(tmp_path_factory.mktemp("gobuild"))


def _quote(s: str) -> str:
    """strconv.Quote for the plain strings these tests use."""
    if not any(c in s for c in ' \t\r\n"`'):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def version_m(name: str, info: GoBuildInfo) -> str:
    """What ``go version -m`` prints for ``info`` (runtime/debug's BuildInfo.String)."""
    lines = [f"{name}: {info.go_version}"]
    if info.path:
        lines.append(f"\tpath\t{info.path}")

    def module(word: str, m: GoModule) -> None:
        if m.replace is None:
            lines.append(f"\t{word}\t{m.path}\t{m.version}\t{m.sum}")
        else:
            lines.append(f"\t{word}\t{m.path}\t{m.version}")
            module("=>", m.replace)
            lines.append("\t")

    if info.main is not None:
        module("mod", info.main)
    for dep in info.deps:
        module("dep", dep)
    lines.extend(f"\tbuild\t{_quote(k)}={_quote(v)}" for k, v in info.settings)
    return "\n".join(lines) + "\n"


def test_real_binary_reads_as_go_version_m_prints_it(go_binary: Path) -> None:
    data = go_binary.read_bytes()
    info = read_buildinfo(data)
    assert info is not None
    printed = subprocess.run([go_tool(), "version", "-m", str(go_binary)], check=True,
                             capture_output=True, text=True).stdout
    # go prints a trailing tab after a module line without sum; compare per line
    assert [x.rstrip("\t") for x in version_m(str(go_binary), info).splitlines()] == \
        [x.rstrip("\t") for x in printed.splitlines()]
    assert info.main == GoModule("example.com/app", "(devel)")
    assert info.deps == (GoModule("example.com/dep", "v1.2.3", "",
                                  GoModule("../dep", "(devel)")),)
    assert info.setting("-ldflags") == "-s -w"
    assert info.setting("CGO_ENABLED") == "0"
    assert info.go_version.startswith("go1.")


def test_binary_without_section_headers_is_read_from_its_writable_segment(
        go_binary: Path) -> None:
    data = bytearray(go_binary.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)          # e_shoff: no section headers
    struct.pack_into("<H", data, 0x3C, 0)          # e_shnum
    info = read_buildinfo(bytes(data))
    assert info is not None and info.main is not None
    assert info.main.path == "example.com/app"


def test_toolchain_binary_has_build_info_without_modules() -> None:
    info = read_buildinfo(Path(go_tool()).resolve().read_bytes())
    assert info is not None and info.path == "cmd/go" and info.main is None


def test_collector_wants_executables_only() -> None:
    collector = GoCollector()
    app = Entry("usr/bin/app", "file", 5000, 0o755)
    assert collector.wants(app) == 64                     # its head first ...
    assert collector.more(app, b"\x7fELF\x02\x01") == 5000  # ... all of it if ELF
    assert collector.more(app, b"#!/bin/sh\n") == 0       # a script: no more
    assert collector.more(Entry("big", "file", 600 << 20, 0o755), b"\x7fELF") == 0  # too big
    assert collector.wants(Entry("usr/bin/app", "file", 5000, 0o644)) == 0
    assert collector.wants(Entry("usr/bin/tiny", "file", 100, 0o755)) == 0
    assert collector.wants(Entry("usr/bin", "dir", 0, 0o755)) == 0
    assert collector.parse(Entry("x", "file", 2000, 0o755), b"#!/bin/sh\n" * 200) is None


# -- synthetic binaries ------------------------------------------------------------
def synthetic_elf(header: bytes, payload: bytes, *, big: bool = False, bits: int = 64,
                  vaddr: int = 0x400000) -> bytes:
    """An ELF file with one writable PT_LOAD segment covering the whole file and a
    ``.go.buildinfo`` section at 0x100 holding ``header`` + ``payload``; ``payload``'s
    pointers may point into the file at ``vaddr + offset``."""
    e = ">" if big else "<"
    body = bytearray(0x100) + header + payload
    body += bytes(-len(body) % 16)
    names = b"\0.go.buildinfo\0.shstrtab\0"
    names_at = len(body)
    body += names + bytes(-len(names) % 16)
    if bits == 64:
        sh_fmt, ph_fmt = f"{e}IIQQQQIIQQ", f"{e}IIQQQQQQ"
        ehdr = f"{e}HHIQQQIHHHHHH"
    else:
        sh_fmt, ph_fmt = f"{e}IIIIIIIIII", f"{e}IIIIIIII"
        ehdr = f"{e}HHIIIIIHHHHHH"
    shoff = len(body)
    shsize, phsize = struct.calcsize(sh_fmt), struct.calcsize(ph_fmt)
    size = len(header) + len(payload)
    body += bytes(shsize)
    body += struct.pack(sh_fmt, 1, 1, 3, vaddr + 0x100, 0x100, size, 0, 0, 16, 0)
    body += struct.pack(sh_fmt, 15, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    phoff = len(body)
    total = phoff + phsize
    if bits == 64:
        body += struct.pack(ph_fmt, 1, 6, 0, vaddr, vaddr, total, total, 0x1000)
    else:
        body += struct.pack(ph_fmt, 1, 0, vaddr, vaddr, total, total, 6, 0x1000)
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if big else 1, 1]) + bytes(9)
    body[:16] = ident
    struct.pack_into(ehdr, body, 16, 2, 62, 1, vaddr, phoff, shoff, 0,
                     struct.calcsize(ehdr) + 16, phsize, 1, shsize, 3, 2)
    return bytes(body)


MODINFO = (START + b"path\texample.com/old\nmod\texample.com/old\tv0.1.0\th1:abc=\n"
           b"dep\tgolang.org/x/text\tv0.3.0\th1:def=\n"
           b"dep\texample.com/lib\tv1.0.0\n=>\texample.com/fork\tv1.0.1\th1:ghi=\n" + END)


@pytest.mark.parametrize(("bits", "big"), [(64, False), (64, True), (32, False)])
def test_pointer_format_before_go_1_18(bits: int, big: bool) -> None:
    size = bits // 8
    order = "big" if big else "little"
    vaddr = 0x400000
    version = b"go1.16.15"
    # payload after the 32-byte header: two string headers, then the two strings
    strings_at = 0x100 + 32 + 4 * size
    version_at, mod_at = strings_at, strings_at + len(version)

    def ptr(n: int) -> bytes:
        return n.to_bytes(size, order)

    header = (BUILDINFO_MAGIC + bytes([size, 1 if big else 0])
              + ptr(vaddr + 0x100 + 32) + ptr(vaddr + 0x100 + 32 + 2 * size))
    header += bytes(32 - len(header))
    payload = (ptr(vaddr + version_at) + ptr(len(version))
               + ptr(vaddr + mod_at) + ptr(len(MODINFO)) + version + MODINFO)
    info = read_buildinfo(synthetic_elf(header, payload, big=big, bits=bits, vaddr=vaddr))
    assert info == GoBuildInfo(
        "go1.16.15", "example.com/old", GoModule("example.com/old", "v0.1.0", "h1:abc="),
        (GoModule("golang.org/x/text", "v0.3.0", "h1:def="),
         GoModule("example.com/lib", "v1.0.0", "",
                  GoModule("example.com/fork", "v1.0.1", "h1:ghi="))))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def test_inline_format_synthetic() -> None:
    version = b"go1.22.1"
    header = BUILDINFO_MAGIC + bytes([8, 2]) + bytes(16)
    payload = _varint(len(version)) + version + _varint(len(MODINFO)) + MODINFO
    info = read_buildinfo(synthetic_elf(header, payload))
    assert info is not None and info.go_version == "go1.22.1"
    assert info.main == GoModule("example.com/old", "v0.1.0", "h1:abc=")


def test_modinfo_lines_quoted_and_garbled() -> None:
    text = (b'path\tx\nmod\tx\n\nbuild\t"we=ird"=`raw value`\nbuild\tk="a\\tb\\x41\\u00e9"\n'
            b'build\t=novalue\nbuild\tnoequals\nbuild\tbad="unterminated\n'
            b"=>\torphan\tv1\ndep\t\tv1\ndep\tok\tv1\textra\tfield\ngo\tgo1.30\n")
    info = parse_modinfo("go1.1", text)
    assert info.go_version == "go1.30"
    assert info.main is None and info.deps == ()
    assert info.settings == (("we=ird", "raw value"), ("k", "a\tbAé"))


def test_garbled_binaries_never_raise(go_binary: Path) -> None:
    real = go_binary.read_bytes()
    at = real.find(BUILDINFO_MAGIC)
    rng = random.Random(1234)
    samples = [b"", b"\x7fELF", real[:64], real[:at + 20], real[:at + 40], bytes(4096),
               b"\x7fELF\x02\x01\x01" + bytes(57) + BUILDINFO_MAGIC * 100]
    for _ in range(300):
        data = bytearray(real[:at + 4096] if rng.random() < 0.5 else real)
        for _ in range(rng.randint(1, 8)):
            pos = rng.choice([rng.randrange(64), at + rng.randrange(48),
                              rng.randrange(len(data))])
            if pos < len(data):
                data[pos] = rng.randrange(256)
        samples.append(bytes(data))
    for i in range(200):
        samples.append(b"\x7fELF" + rng.randbytes(rng.randrange(4, 3000)) + (
            BUILDINFO_MAGIC + rng.randbytes(64) if i % 2 else b""))
    for data in samples:
        info = read_buildinfo(data)
        assert info is None or isinstance(info, GoBuildInfo)
