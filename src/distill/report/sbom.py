"""An image's software bill of materials, as SPDX 2.3 JSON and CycloneDX 1.5 JSON.

Both documents describe the image (by its manifest digest) and every component
``distill.report.inventory`` finds in its final file tree, each with its package URL and
where it was found: the file's path and the layer (index, diff_id, and the instruction
that made it). They are reproducible: the same image gives the same bytes. The SPDX
namespace and the CycloneDX serial number are derived from the image digest, and the
creation time is the image's own ``created`` (the Unix epoch when it has none) unless
the caller passes one.

Analyse the image with ``inventory.collectors()`` so the package records are read.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packageurl import PackageURL

from distill.errors import UsageError
from distill.image.image import Image
from distill.oci.reference import normalize_reference
from distill.report.analyze import Analysis
from distill.report.inventory import APPLICATION, OPERATING_SYSTEM, Component, inventory
from distill.report.text import visible_json

TOOL = "distill"
EPOCH = "1970-01-01T00:00:00Z"
NOASSERTION = "NOASSERTION"
CYCLONEDX_SCHEMA = "http://cyclonedx.org/schema/bom-1.5.schema.json"
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?"
                   r"(?:([Zz])|([+-])(\d\d):(\d\d))")
_SPDX_PURPOSE = {APPLICATION: "APPLICATION", OPERATING_SYSTEM: "OPERATING_SYSTEM",
                 "library": "LIBRARY"}


@dataclass(frozen=True)
class Subject:
    """What an SBOM describes: the image, its name, the instruction and diff_id of each
    layer, and the components found in it."""

    name: str
    image: Image
    created_by: Sequence[str]
    diff_ids: Sequence[str]
    components: Sequence[Component]

    @classmethod
    def of(cls, analysis: Analysis) -> Subject:
        return cls(analysis.name, analysis.image,
                   [layer.created_by for layer in analysis.layers],
                   [layer.diff_id for layer in analysis.layers],
                   inventory(analysis.tree))

    @property
    def digest(self) -> str:
        return str(self.image.digest)

    def where(self, c: Component) -> str:
        """``/usr/bin/app (layer 3: RUN go build ...)``"""
        made = self.created_by[c.layer] if c.layer < len(self.created_by) else ""
        return f"/{c.path} (layer {c.layer}{': ' + made if made else ''})"


def timestamp(created: str | None) -> str:
    """An RFC 3339 time as SPDX wants it (UTC, seconds, ``Z``); the epoch if it is not
    one."""
    m = _TIME.fullmatch((created or "").strip())
    if m is None:
        return EPOCH
    y, mo, d, h, mi, s, zulu, sign, oh, om = m.groups()
    try:
        when = datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59),
                        tzinfo=UTC)
        if not zulu:
            offset = (int(oh) * 60 + int(om)) * (1 if sign == "+" else -1)
            when = datetime.fromtimestamp(when.timestamp() - offset * 60, UTC)
    except (ValueError, OverflowError, OSError):
        return EPOCH
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_purl(name: str, digest: str) -> str:
    """``pkg:oci/app@sha256:...?repository_url=registry/path/app&tag=1``"""
    try:
        ref = normalize_reference(name)
    except UsageError:
        return ""
    qualifiers = {"repository_url": ref.name}
    if ref.tag:
        qualifiers["tag"] = ref.tag
    return PackageURL(type="oci", name=ref.name.rpartition("/")[2], version=digest,
                      qualifiers=qualifiers).to_string()


def _uuid(subject: Subject, kind: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://distill.invalid/{kind}/{subject.digest}")


def _ref(c: Component) -> str:
    """A stable identifier for a component: its kind and name, and a hash of its key."""
    digest = hashlib.sha256("\0".join(c.key).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9.\-]+", "-", f"{c.kind}-{c.name}")[:80]
    return f"{name}-{digest}"


def _layer_properties(subject: Subject, c: Component) -> list[tuple[str, str]]:
    props = [("distill:path", "/" + c.path), ("distill:layer", str(c.layer))]
    if c.layer < len(subject.diff_ids):
        props.append(("distill:layer:diff_id", subject.diff_ids[c.layer]))
    if c.layer < len(subject.created_by) and subject.created_by[c.layer]:
        props.append(("distill:layer:created_by", subject.created_by[c.layer]))
    return props


# -- SPDX 2.3 ------------------------------------------------------------------------
def spdx(subject: Subject, created: str | None = None) -> dict[str, Any]:
    """The SPDX 2.3 document (JSON form) for ``subject``."""
    image_id = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [_spdx_image(subject, image_id)]
    relationships = [_relation("SPDXRef-DOCUMENT", "DESCRIBES", image_id)]
    ids = [f"SPDXRef-Package-{_ref(c)}" for c in subject.components]
    for c, spdx_id in zip(subject.components, ids, strict=True):
        packages.append(_spdx_package(subject, c, spdx_id))
        relationships.append(_relation(image_id, "CONTAINS", spdx_id))
        relationships.extend(_relation(spdx_id, "DEPENDS_ON", ids[d]) for d in c.depends_on)
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name or subject.digest,
        "documentNamespace": f"https://distill.invalid/spdx/{_uuid(subject, 'spdx')}",
        "creationInfo": {
            "created": timestamp(created or subject.image.config.created),
            "creators": [f"Tool: {TOOL}"],
        },
        "packages": packages,
        "relationships": relationships,
    }


def _relation(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}


def _spdx_image(subject: Subject, spdx_id: str) -> dict[str, Any]:
    package: dict[str, Any] = {
        "name": subject.name or subject.digest,
        "SPDXID": spdx_id,
        "versionInfo": subject.digest,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256",
                       "checksumValue": subject.digest.removeprefix("sha256:")}],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    }
    purl = image_purl(subject.name, subject.digest)
    if purl:
        package["externalRefs"] = [_purl_ref(purl)]
    return package


def _purl_ref(purl: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
            "referenceLocator": purl}


def _spdx_package(subject: Subject, c: Component, spdx_id: str) -> dict[str, Any]:
    package: dict[str, Any] = {
        "name": c.name,
        "SPDXID": spdx_id,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": _SPDX_PURPOSE[c.type],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": c.license if c.license_is_spdx else NOASSERTION,
        "copyrightText": NOASSERTION,
    }
    if c.version:
        package["versionInfo"] = c.version
    if c.license and not c.license_is_spdx:
        package["licenseComments"] = f"declared as: {c.license}"
    if c.source:
        package["sourceInfo"] = f"built from source package {c.source}"
    if c.description:
        package["description"] = c.description
    if c.purl:
        package["externalRefs"] = [_purl_ref(c.purl)]
    facts = "; ".join(f"{k}={v}" for k, v in c.properties)
    package["comment"] = f"found at {subject.where(c)}" + (f"; {facts}" if facts else "")
    return package


# -- CycloneDX 1.5 -------------------------------------------------------------------
def cyclonedx(subject: Subject, created: str | None = None) -> dict[str, Any]:
    """The CycloneDX 1.5 BOM (JSON form) for ``subject``."""
    image_ref = "image"
    refs = [_ref(c) for c in subject.components]
    image: dict[str, Any] = {"type": "container", "bom-ref": image_ref,
                             "name": subject.name or subject.digest,
                             "version": subject.digest,
                             "hashes": [{"alg": "SHA-256", "content":
                                         subject.digest.removeprefix("sha256:")}]}
    purl = image_purl(subject.name, subject.digest)
    if purl:
        image["purl"] = purl
    dependencies = [{"ref": image_ref, "dependsOn": sorted(set(refs))}]
    dependencies.extend({"ref": refs[i], "dependsOn": sorted({refs[d] for d in c.depends_on})}
                        for i, c in enumerate(subject.components))
    return {
        "$schema": CYCLONEDX_SCHEMA,
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{_uuid(subject, 'cyclonedx')}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp(created or subject.image.config.created),
            "tools": {"components": [{"type": "application", "name": TOOL}]},
            "component": image,
        },
        "components": [_cdx_component(subject, c, ref)
                       for c, ref in zip(subject.components, refs, strict=True)],
        "dependencies": dependencies,
    }


def _cdx_component(subject: Subject, c: Component, ref: str) -> dict[str, Any]:
    component: dict[str, Any] = {"type": c.type, "bom-ref": ref, "name": c.name}
    if c.version:
        component["version"] = c.version
    if c.description:
        component["description"] = c.description
    if c.license:
        component["licenses"] = ([{"expression": c.license}] if c.license_is_spdx
                                 else [{"license": {"name": c.license}}])
    if c.purl:
        component["purl"] = c.purl
    props = list(c.properties)
    if c.source:
        props.append(("deb:source", c.source))
    props.extend(_layer_properties(subject, c))
    component["properties"] = [{"name": k, "value": v} for k, v in props]
    component["evidence"] = {"occurrences": [{"location": "/" + c.path}]}
    return component


def to_json(document: dict[str, Any]) -> bytes:
    """``document`` as JSON bytes, the same for the same document (sorted keys)."""
    # a name's undecodable bytes (lone surrogates) and control characters as \xNN: the
    # document stays UTF-8 that every reader takes
    return json.dumps(visible_json(document), indent=2, sort_keys=True,
                      ensure_ascii=False).encode() + b"\n"
