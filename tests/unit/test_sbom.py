"""SBOMs of synthetic images: the packages each package manager's records name, only as
the final image shows them, with package URLs and where each was found; both documents
valid against the official SPDX 2.3 and CycloneDX 1.5 JSON schemas
(tests/data/sbom-schemas/README.md says where those came from), and reproducible."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.report.analyze import analyze
from distill.report.filetree import FileTree, stack
from distill.report.inventory import Component, collectors, inventory
from distill.report.layerfiles import Entry, read_layer
from distill.report.osrelease import parse_os_release
from distill.report.packages import DpkgCollector, NpmLockCollector, PythonCollector
from distill.report.sbom import Subject, cyclonedx, spdx, timestamp, to_json
from distill.store.store import Store
from tests.unit.test_goinfo import build_go_binary

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "sbom-schemas"

OS_RELEASE = b'''PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
'''
STATUS = b"""Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library
 shared libraries

Package: openssl
Status: deinstall ok config-files
Architecture: amd64
Version: 3.0.11-1

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1
"""
METADATA = b"""Metadata-Version: 2.1
Name: Requests_Toolbelt
Version: 1.0.0
License: Apache 2.0

A long description.
"""
METADATA_SPDX = b"Metadata-Version: 2.4\nName: attrs\nVersion: 24.2.0\nLicense-Expression: MIT\n"
LOCK = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
    "": {"name": "app", "version": "1.0.0"},
    "node_modules/left-pad": {"version": "1.3.0", "license": "WTFPL"},
    "node_modules/only-in-lock": {"version": "2.0.0", "license": "ISC"},
    "node_modules/not-installed": {"version": "9.9.9"},
    "node_modules/../../etc": {"version": "1"},
}}).encode()


def tar(*members: tuple[str, bytes | None, int]) -> bytes:
    """A layer: (name, content or None for a directory, mode)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_go_binary(tmp_path_factory.mktemp("gobuild")).read_bytes()


@pytest.fixture(scope="module")
def layers(go_binary: bytes) -> list[tuple[bytes, str]]:
    """(tar, the instruction that made it) per layer."""
    base = tar(("etc/os-release", OS_RELEASE, 0o644),
               ("var/lib/dpkg/status", STATUS, 0o644),
               ("usr/lib/python3/dist-packages/requests_toolbelt-1.0.0.dist-info/METADATA",
                METADATA, 0o644),
               ("usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA",
                b"Name: gone\nVersion: 1.0\n", 0o644),
               ("usr/lib/python3/dist-packages/attrs-24.2.0.dist-info/METADATA",
                METADATA_SPDX, 0o644))
    app = tar(("app/package-lock.json", LOCK, 0o644),
              ("app/node_modules/left-pad/package.json",
               b'{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}', 0o644),
              ("app/node_modules/@scope/pkg/package.json",
               (b'{"name": "@scope/pkg", "version": "1.0.0", '
               b'"license": {"type": "MIT"}}'), 0o644),
              ("app/node_modules/@scope/pkg/lib/package.json",
               b'{"name": "inner", "version": "0.0.1"}', 0o644),
              ("app/node_modules/only-in-lock", None, 0o755),
              ("app/node_modules/broken/package.json", b'{"name": ', 0o644),
              ("usr/local/bin/app", go_binary, 0o755),
              ("usr/local/bin/app.txt", go_binary[:4096], 0o644))
    cleanup = tar(("usr/lib/python3/dist-packages/.wh.gone-1.0.dist-info", b"", 0o644))
    return [(base, "ADD rootfs.tar /"), (app, "COPY --from=build /out /"),
            (cleanup, "RUN pip uninstall gone")]


def image_of(layers: list[tuple[bytes, str]], created: str | None) -> Image:
    image = Image(ImageConfig(created=created))
    for data, made in layers:
        digest = Digest.of_bytes(data)
        image = image.append_layer(Layer(Descriptor(mt.OCI_LAYER_TAR, digest, len(data)),
                                         digest, len(data)), made)
    return image


def tree_of(layers: list[tuple[bytes, str]]) -> FileTree:
    return stack([read_layer(io.BytesIO(data), mt.OCI_LAYER_TAR, f"layer {i}",
                             collectors())[0] for i, (data, _) in enumerate(layers)])


@pytest.fixture(scope="module")
def subject(layers: list[tuple[bytes, str]]) -> Subject:
    image = image_of(layers, "2024-05-06T07:08:09.123456789+02:00")
    return Subject("registry.example/team/app:1.2", image, [m for _, m in layers],
                   [str(d) for d in image.config.diff_ids], inventory(tree_of(layers)))


def by_name(components: list[Component] | Any) -> dict[str, Component]:
    return {c.name: c for c in components}


def test_inventory_lists_what_the_final_image_holds(subject: Subject) -> None:
    found = by_name(subject.components)
    assert found["debian"].type == "operating-system" and found["debian"].version == "12"
    assert found["libc6"].purl == \
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    assert found["libc6"].source == "glibc 2.36-9+deb12u4"
    assert found["libssl3"].source == "openssl 3.0.11-1~deb12u2"
    assert "openssl" not in found                     # removed, config files left
    assert "gone" not in found                        # deleted by a later layer
    toolbelt = found["Requests_Toolbelt"]
    assert toolbelt.purl == "pkg:pypi/requests-toolbelt@1.0.0"
    assert (toolbelt.license, toolbelt.license_is_spdx) == ("Apache 2.0", False)
    assert (found["attrs"].license, found["attrs"].license_is_spdx) == ("MIT", True)
    assert found["@scope/pkg"].purl == "pkg:npm/%40scope/pkg@1.0.0"
    assert found["@scope/pkg"].license == "MIT"
    assert "inner" not in found and "broken" not in found
    assert found["left-pad"].path == "app/node_modules/left-pad/package.json"
    assert found["only-in-lock"].path == "app/package-lock.json"
    assert "not-installed" not in found and "app" not in found
    app = found["example.com/app"]
    assert app.type == "application" and app.path == "usr/local/bin/app" and app.layer == 1
    assert app.purl == "pkg:golang/example.com/app"
    deps = {subject.components[i].name: subject.components[i] for i in app.depends_on}
    assert deps["example.com/dep"].purl == "pkg:golang/example.com/dep@v1.2.3"
    assert ("golang:replaced-by", "../dep (devel)") in deps["example.com/dep"].properties
    assert deps["stdlib"].purl.startswith("pkg:golang/stdlib@1.")
    assert len([c for c in subject.components if c.path == "usr/local/bin/app.txt"]) == 0


def _validator(schema: str, *others: str) -> Draft7Validator:
    resources = [(json.loads((SCHEMAS / name).read_text())) for name in others]
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in resources)
    return Draft7Validator(json.loads((SCHEMAS / schema).read_text()), registry=registry,
                           format_checker=Draft7Validator.FORMAT_CHECKER)


def _errors(validator: Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_spdx_document_is_valid_and_says_where_each_package_was_found(
        subject: Subject) -> None:
    doc = spdx(subject)
    assert _errors(_validator("spdx-schema.json"), doc) == []
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "2024-05-06T05:08:09Z"
    packages = {p["name"]: p for p in doc["packages"]}
    image = packages["registry.example/team/app:1.2"]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["versionInfo"] == str(subject.image.digest)
    libc = packages["libc6"]
    assert libc["externalRefs"] == [{
        "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
        "referenceLocator": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"}]
    assert "found at /var/lib/dpkg/status (layer 0: ADD rootfs.tar /)" in libc["comment"]
    assert packages["attrs"]["licenseDeclared"] == "MIT"
    toolbelt = packages["Requests_Toolbelt"]
    assert toolbelt["licenseDeclared"] == "NOASSERTION"
    assert toolbelt["licenseComments"] == "declared as: Apache 2.0"
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(set(ids)) == len(ids)
    relations = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
                 for r in doc["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", image["SPDXID"]) in relations
    assert all((image["SPDXID"], "CONTAINS", i) in relations for i in ids[1:])
    app, dep = packages["example.com/app"], packages["example.com/dep"]
    assert (app["SPDXID"], "DEPENDS_ON", dep["SPDXID"]) in relations
    assert "layer 1: COPY --from=build /out /" in app["comment"]


def test_cyclonedx_document_is_valid_and_says_where_each_component_was_found(
        subject: Subject) -> None:
    doc = cyclonedx(subject)
    validator = _validator("bom-1.5.schema.json", "spdx.schema.json", "jsf-0.82.schema.json")
    assert _errors(validator, doc) == []
    assert doc["serialNumber"].startswith("urn:uuid:")
    image = doc["metadata"]["component"]
    assert image["type"] == "container" and image["version"] == str(subject.image.digest)
    assert image["purl"].startswith("pkg:oci/app@sha256:")
    components = {c["name"]: c for c in doc["components"]}
    assert components["debian"]["type"] == "operating-system"
    app = components["example.com/app"]
    assert app["type"] == "application"
    assert app["evidence"] == {"occurrences": [{"location": "/usr/local/bin/app"}]}
    props = {p["name"]: p["value"] for p in app["properties"]}
    assert props["distill:layer"] == "1"
    assert props["distill:layer:created_by"] == "COPY --from=build /out /"
    assert props["distill:layer:diff_id"] == str(subject.image.config.diff_ids[1])
    assert components["left-pad"]["licenses"] == [{"expression": "WTFPL"}]
    assert components["Requests_Toolbelt"]["licenses"] == [{"license": {"name": "Apache 2.0"}}]
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(set(refs)) == len(refs)
    depends = {d["ref"]: d["dependsOn"] for d in doc["dependencies"]}
    assert sorted(depends["image"]) == sorted(refs)
    assert components["example.com/dep"]["bom-ref"] in depends[app["bom-ref"]]


def test_documents_are_reproducible(layers: list[tuple[bytes, str]]) -> None:
    def both(created: str | None) -> tuple[bytes, bytes]:
        image = image_of(layers, created)
        s = Subject("app", image, [m for _, m in layers],
                    [str(d) for d in image.config.diff_ids], inventory(tree_of(layers)))
        return to_json(spdx(s)), to_json(cyclonedx(s))

    first = both(None)
    assert first == both(None)
    assert json.loads(first[0])["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    other = both("2020-01-01T00:00:00Z")       # another image: another namespace
    assert json.loads(first[0])["documentNamespace"] != \
        json.loads(other[0])["documentNamespace"]
    assert json.loads(first[1])["serialNumber"] != json.loads(other[1])["serialNumber"]
    assert spdx(Subject("app", image_of(layers, None), [], [], []),
                created="2021-02-03T04:05:06Z")["creationInfo"]["created"] == \
        "2021-02-03T04:05:06Z"


def test_analyze_then_sbom(tmp_path: Path, layers: list[tuple[bytes, str]]) -> None:
    store = Store(tmp_path / "store")
    for data, _ in layers:
        store.blobs.put_bytes(data)
    image = image_of(layers, None)
    analysis = analyze(store, image, "app:latest", collectors())
    subject = Subject.of(analysis)
    names = {c.name for c in subject.components}
    assert {"libc6", "attrs", "left-pad", "example.com/app", "debian"} <= names
    assert _errors(_validator("spdx-schema.json"), spdx(subject)) == []


def test_distroless_status_d_and_usr_lib_os_release() -> None:
    status_d = b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"
    layer = tar(("usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n", 0o644),
                ("var/lib/dpkg/status.d/base-files", status_d, 0o644),
                ("var/lib/dpkg/status.d/base-files.md5sums", b"x  y\n", 0o644),
                ("var/lib/dpkg/status.d/libssl3", b"Package: libssl3\n", 0o644),
                ("var/lib/dpkg/status.d/python3.11", (b"Package: python3.11\nVersion: 3.11.2"
                 b"-6\nArchitecture: amd64\nSource: python3.11\n"), 0o644))
    found = by_name(inventory(tree_of([(layer, "")])))
    assert found["base-files"].purl == \
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12"
    assert found["python3.11"].source == ""
    assert "libssl3" not in found                      # no version: not a package
    assert found["debian"].path == "usr/lib/os-release"


def test_hostile_records_are_skipped() -> None:
    entry = Entry("var/lib/dpkg/status", "file", 10, 0o644)
    dpkg = DpkgCollector()
    assert dpkg.parse(entry, b"\xff\xfe\x00garbage\n\n:::\n") is None
    assert dpkg.parse(entry, b"Package: a\nVersion: 1\nStatus: \n") is None  # not installed
    python = PythonCollector()
    assert python.parse(entry, b"\x00\xff" * 100) is None
    assert python.parse(entry, b"Name: x\nVersion: 1\nLicense: " + b"A" * 300 + b"\n") \
        is not None
    lock = NpmLockCollector()
    for bad in (b"[" * 100000, b'{"lockfileVersion": 3, "packages": []}',
                b'{"lockfileVersion": 1}', (b'{"lockfileVersion": 3, "packages": '
                b'{"node_modules/x": {"version": 3}, "node_modules/y": null}}')):
        assert lock.parse(Entry("package-lock.json", "file", 1, 0o644), bad) is None
    assert parse_os_release("ID='unterminated\n\x00=1\n") is None
    assert DpkgCollector().wants(Entry("var/lib/dpkg/status", "file", 1 << 40, 0o644)) == 0
    assert PythonCollector().wants(Entry("a.dist-info/METADATA", "file", 1 << 30, 0o644)) == 0


@pytest.mark.parametrize(("given", "expected"), [
    ("2024-05-06T07:08:09Z", "2024-05-06T07:08:09Z"),
    ("2024-05-06T07:08:09.999999999Z", "2024-05-06T07:08:09Z"),
    ("2024-05-06T00:30:00+01:00", "2024-05-05T23:30:00Z"),
    ("2024-05-06T23:30:00-01:00", "2024-05-07T00:30:00Z"),
    ("2024-13-06T07:08:09Z", "1970-01-01T00:00:00Z"),
    ("yesterday", "1970-01-01T00:00:00Z"),
    (None, "1970-01-01T00:00:00Z"),
])
def test_timestamp(given: str | None, expected: str) -> None:
    assert timestamp(given) == expected


def test_undecodable_names_and_instructions_keep_the_documents_valid() -> None:
    """A package record at a path that is not UTF-8 and a layer made by an instruction
    holding a lone surrogate (JSON allows the escape): both documents are still UTF-8
    JSON, the byte shown as \\xNN (an attacker's image made --sbom raise here)."""
    status = b"Package: evil\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
    layer = tar(("var/lib/dpkg/status.d/pk\udcfe", status, 0o644))   # the byte 0xfe
    tree = stack([read_layer(io.BytesIO(layer), mt.OCI_LAYER_TAR, "layer", collectors())[0]])
    image = image_of([(layer, "RUN \ud800")], None)
    subject = Subject("x:1", image, ["RUN \ud800"], [str(d) for d in image.config.diff_ids],
                      inventory(tree))
    assert [c.name for c in subject.components if c.kind != "operating-system"] == ["evil"]
    for document in (spdx(subject), cyclonedx(subject)):
        text = to_json(document).decode("utf-8")
        assert "\\xfe" in text and "\\ud800" in text and "\ud800" not in text
        json.loads(text)



def test_a_collector_reads_more_only_when_the_head_says_so() -> None:
    """The head first; the rest only where ``more`` asks (the Go collector reads an
    executable whole only if it is ELF: an attacker's executable of zeros cost a GB)."""
    given: dict[str, int] = {}

    class HeadFirst:
        name = "head-first"

        def wants(self, entry: Entry) -> int:
            return 4

        def more(self, entry: Entry, head: bytes) -> int:
            return entry.size if head == b"\x7fELF" else 0

        def parse(self, entry: Entry, data: bytes) -> object | None:
            given[entry.path] = len(data)
            return None

    layer = tar(("elf", b"\x7fELF" + bytes(5000), 0o755), ("zeros", bytes(5000), 0o755))
    read_layer(io.BytesIO(layer), mt.OCI_LAYER_TAR, "layer", [HeadFirst()])
    assert given == {"elf": 5004}
