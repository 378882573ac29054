"""deb822 parsing: Packages indexes and Release files."""

from __future__ import annotations

import io

import pytest

from distill.debian.control import iter_paragraphs, package_record, parse_packages, parse_release
from distill.errors import ArchiveError

SHA_A = "a" * 64
SHA_B = "b" * 64

PACKAGES = f"""\
Package: tzdata
Version: 2024a-0+deb12u1
Installed-Size: 3431
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: all
Provides: tzdata-bookworm
Depends: debconf (>= 0.5) | debconf-2.0
Description: time zone and daylight-saving time data
Description-md5: 5f8ef4a2ea4a2d29d8e3e0d3ab3b9e37
Tag: culture::TODO, implemented-in::TODO,
 role::app-data
Section: localization
Priority: required
Filename: pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb
Size: 256000
MD5sum: 0123456789abcdef0123456789abcdef
SHA256: {SHA_A}

Package: libc6
Version: 2.36-9+deb12u4
Architecture: arm64
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_arm64.deb
Size: 2
SHA256: {SHA_B}

Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Depends: libgcc-s1
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb
Size: 2759320
SHA256: {SHA_B.upper()}
"""


def test_packages_paragraphs_become_records_for_arch_and_all() -> None:
    records = list(parse_packages(PACKAGES, arch="amd64"))
    assert [(r.name, r.architecture) for r in records] == [("tzdata", "all"),
                                                           ("libc6", "amd64")]
    tz, libc = records
    assert tz.version == "2024a-0+deb12u1"
    assert tz.filename == "pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb"
    assert (tz.sha256, tz.size) == (SHA_A, 256000)
    assert libc.sha256 == SHA_B  # normalized to lowercase
    assert tz.field("Depends") == "debconf (>= 0.5) | debconf-2.0"
    assert tz.field("depends") == tz.field("Depends")  # field names are case-insensitive
    assert tz.field("Recommends") == ""
    # Multi-line values keep their continuation lines, so the paragraph can be rewritten.
    assert tz.field("Tag") == "culture::TODO, implemented-in::TODO,\n role::app-data"
    assert [k for k, _ in tz.fields][:4] == ["Package", "Version", "Installed-Size",
                                             "Maintainer"]
    rewritten = "".join(f"{k}: {v}\n" for k, v in tz.fields)
    assert rewritten == PACKAGES.split("\n\n")[0] + "\n"


def test_streamed_parsing_matches_whole_text_across_chunk_boundaries() -> None:
    text = "\n".join([PACKAGES] * 50)
    whole = list(iter_paragraphs(text))
    for size in (1, 7, 64, 1000):
        assert list(iter_paragraphs(io.StringIO(text), chunk_size=size)) == whole
    assert len(whole) == 150


def test_blank_lines_with_spaces_separate_paragraphs_and_comments_are_skipped() -> None:
    text = "\n\nA: 1\n# a comment\nB:   two  \n \t\n\nC:\n x\n y\n"
    assert list(iter_paragraphs(text)) == [(("A", "1"), ("B", "two")),
                                           (("C", "\n x\n y"),)]


@pytest.mark.parametrize(("text", "message"), [
    ("Package: x\nnot a field\n", "not a field"),
    ("Package: x\nVersion: 1\nArchitecture: amd64\nFilename: f\nSize: 1\n", "lacks SHA256"),
    (f"Package: x\nVersion: 1\nArchitecture: amd64\nFilename: f\nSize: big\nSHA256: {SHA_A}\n",
     "Size is not a number"),
    ("Package: x\nVersion: 1\nArchitecture: amd64\nFilename: f\nSize: 1\nSHA256: abc\n",
     "SHA256 is not a sha256"),
])
def test_malformed_packages_are_archive_errors(text: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        list(parse_packages(text, arch="amd64"))


def test_package_record_from_a_paragraph() -> None:
    (para,) = iter_paragraphs(PACKAGES.split("\n\n")[2])
    assert package_record(para).name == "libc6"


RELEASE = f"""\
Origin: Debian
Label: Debian
Suite: oldstable
Version: 12.5
Codename: bookworm
Date: Sat, 10 Feb 2024 10:05:01 UTC
Valid-Until: Sat, 17 Feb 2024 10:05:01 UTC
Acquire-By-Hash: yes
No-Support-for-Architecture-all: Packages
Architectures: all amd64 arm64
Components: main contrib non-free-firmware non-free
Description: Debian 12.5 Released 10 February 2024
MD5Sum:
 0123456789abcdef0123456789abcdef  1234 main/binary-amd64/Packages
SHA256:
 {SHA_A} 50060337 main/binary-amd64/Packages
 {SHA_B}  8790396 main/binary-amd64/Packages.xz
"""


def test_release_fields() -> None:
    release = parse_release(RELEASE)
    assert (release.suite, release.codename) == ("oldstable", "bookworm")
    assert release.date == "Sat, 10 Feb 2024 10:05:01 UTC"
    assert release.date_epoch == 1707559501
    assert release.valid_until_epoch == 1707559501 + 7 * 86400
    assert release.acquire_by_hash
    assert release.architectures == ("all", "amd64", "arm64")
    assert "non-free-firmware" in release.components
    assert dict(release.sha256) == {"main/binary-amd64/Packages": (SHA_A, 50060337),
                                    "main/binary-amd64/Packages.xz": (SHA_B, 8790396)}


@pytest.mark.parametrize(("edit", "message"), [
    (("Date: Sat, 10 Feb 2024 10:05:01 UTC\n", ""), "no Date"),
    (("Date: Sat, 10 Feb 2024 10:05:01 UTC", "Date: yesterday"), "bad date"),
    ((f" {SHA_B}  8790396", f" {SHA_B}  big"), "bad SHA256 line"),
    (("SHA256:", "SHA512:"), "no SHA256 checksums"),
    (("Origin: Debian\n", "Origin: Debian\n\nOrigin: Evil\n"), "expected one paragraph"),
])
def test_malformed_release_is_an_archive_error(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        parse_release(RELEASE.replace(*edit))


def test_a_field_twice_in_a_paragraph_is_an_error() -> None:
    with pytest.raises(ArchiveError, match="field sha256 appears twice"):
        list(iter_paragraphs(f"SHA256: {SHA_A}\nsha256: {SHA_B}\n"))
