"""Lock files: a stable, strict JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distill.debian.control import PackageRecord
from distill.debian.lock import Lock
from distill.errors import ArchiveError


def rec(name: str, version: str, sha: str) -> PackageRecord:
    filename = f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb"
    fields = (("Package", name), ("Version", version), ("Architecture", "amd64"),
              ("Maintainer", "Jörg Müller <jm@example.org>"),
              ("Description", "a package\n with a long description\n ."),
              ("Filename", filename), ("Size", "1234"), ("SHA256", sha))
    return PackageRecord(name=name, version=version, architecture="amd64", filename=filename,
                         sha256=sha, size=1234, fields=fields)


LOCK = Lock(mirror="http://deb.debian.org/debian", suite="bookworm", arch="amd64",
            release_date="Sat, 10 Feb 2024 10:05:01 UTC", date_epoch=1707559501,
            packages=(rec("libc6", "2.36-9+deb12u4", "a" * 64),
                      rec("base-files", "12.4+deb12u5", "b" * 64)))


def test_round_trip_is_exact_and_sorted() -> None:
    text = LOCK.to_json()
    again = Lock.from_json(text)
    assert [p.name for p in again.packages] == ["base-files", "libc6"]
    assert sorted(again.packages, key=lambda p: p.name) == sorted(LOCK.packages,
                                                                   key=lambda p: p.name)
    assert again.to_json() == text
    assert again.packages[1].fields == LOCK.packages[0].fields  # order kept


def test_output_is_stable_and_readable() -> None:
    shuffled = Lock(**{**LOCK.__dict__, "packages": LOCK.packages[::-1]})
    assert shuffled.to_json() == LOCK.to_json()
    text = LOCK.to_json()
    assert text.endswith("}\n") and "\n  " in text
    assert "Jörg Müller" in text  # UTF-8 as is, diffable
    doc = json.loads(text)
    assert list(doc["packages"][0]) == ["name", "version", "architecture", "filename",
                                        "sha256", "size", "fields"]


def _mutated(change: Any) -> str:
    doc = json.loads(LOCK.to_json())
    change(doc)
    return json.dumps(doc)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("suite"), "missing suite"),
    (lambda d: d.update(extra=1), "unknown extra"),
    (lambda d: d.update(lock_version=3), "unsupported lock_version"),
    (lambda d: d.update(date_epoch="1707559501"), "date_epoch"),
    (lambda d: d.update(packages={}), "packages is not a list"),
    (lambda d: d["packages"][0].update(sha256="A" * 64), "sha256 is not 64 lowercase hex"),
    (lambda d: d["packages"][0].update(size=True), "size"),
    (lambda d: d["packages"][0].update(size=-1), "size"),
    (lambda d: d["packages"][0].pop("fields"), "missing fields"),
    (lambda d: d["packages"][0]["fields"].update(Version="9"), "disagrees with version"),
    (lambda d: d["packages"][0]["fields"].update({"Bad Key": "x"}), "bad field name"),
    (lambda d: d["packages"][0]["fields"].update(Extra=3), "field Extra"),
    (lambda d: d["packages"].append(d["packages"][0]), "listed twice"),
    # Regression (outsider review): suite and arch were taken as written, into
    # /etc/os-release and the image config ("bookworm\nID=evil", "../x").
    (lambda d: d.update(suite="bookworm\nID=evil"), "not a Debian suite name"),
    (lambda d: d.update(suite="../../x"), "not a Debian suite name"),
    (lambda d: d.update(arch="../x"), "not a Debian architecture"),
    (lambda d: d.update(arch="amd64\u0000"), "not a Debian architecture"),
    (lambda d: d.update(arch="arm64"), "packages not for arm64"),
])
def test_from_json_is_strict(change: Any, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        Lock.from_json(_mutated(change))


def test_from_json_rejects_non_json_and_duplicate_keys() -> None:
    with pytest.raises(ArchiveError, match="not valid JSON"):
        Lock.from_json("{")
    with pytest.raises(ArchiveError, match="not an object"):
        Lock.from_json("[]")
    text = LOCK.to_json().replace('"suite": "bookworm",', '"suite": "bookworm", "suite": "x",')
    with pytest.raises(ArchiveError, match="duplicate key 'suite'"):
        Lock.from_json(text)


def test_packages_from_another_mirror_make_a_version_2_lock() -> None:
    """A security update is fetched from debian-security: the lock says so per package,
    and only then is it version 2 (a lock of one mirror stays as it was)."""
    security = "http://deb.debian.org/debian-security"
    lock = Lock(**{**LOCK.__dict__, "mirrors": (("libc6", security),)})
    doc = json.loads(lock.to_json())
    assert doc["lock_version"] == 2 and doc["mirrors"] == {"libc6": security}
    again = Lock.from_json(lock.to_json())
    assert again.to_json() == lock.to_json() and again.mirrors == lock.mirrors
    assert again.mirror_for("libc6") == security
    assert again.mirror_for("base-files") == LOCK.mirror
    assert json.loads(LOCK.to_json())["lock_version"] == 1 and "mirrors" not in LOCK.to_json()


@pytest.mark.parametrize(("mirrors", "message"), [
    ({"curl": "http://deb.debian.org/debian-security"}, "which it does not list"),
    ({"libc6": "file:///etc"}, "not an http"),
    ({"libc6": 3}, "not an http"),
    ([], "mirrors is not an object"),
])
def test_version_2_mirrors_are_checked(mirrors: Any, message: str) -> None:
    doc = json.loads(LOCK.to_json())
    doc.update(lock_version=2, mirrors=mirrors)
    with pytest.raises(ArchiveError, match=message):
        Lock.from_json(json.dumps(doc))


def test_version_1_has_no_mirrors_key() -> None:
    doc = json.loads(LOCK.to_json())
    doc["mirrors"] = {}
    with pytest.raises(ArchiveError, match="unknown mirrors"):
        Lock.from_json(json.dumps(doc))
