"""OCI 1.1 referrers: an artifact (an SBOM) attached to an image by a manifest whose
``subject`` is the image's manifest.

The referrer is an image manifest with an ``artifactType``, the empty config (the blob
``{}``), the artifact as its one layer, and the subject's descriptor; its annotations
carry the image's ``created`` time, so the same image gives the same referrer. Its
blobs are put in the store; an OCI layout lists it in index.json beside the image
(``formats/oci_layout``) and a push sends it after the image (``registry/push``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.image.image import Image
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor, canonical_json
from distill.oci.digest import Digest
from distill.store.store import Store

#: The OCI empty descriptor's blob (image-spec 1.1, "Guidance for an Empty Descriptor").
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
#: artifactType (and the layer's media type) of each SBOM format
SPDX_JSON = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
ANNOTATION_CREATED = "org.opencontainers.image.created"


def empty_descriptor() -> Descriptor:
    return Descriptor(EMPTY_MEDIA_TYPE, Digest.of_bytes(EMPTY_JSON), len(EMPTY_JSON))


@dataclass(frozen=True)
class Referrer:
    """One referrer manifest: its bytes, what it refers to and the blobs it names."""

    manifest: bytes
    artifact_type: str
    subject: Descriptor
    blobs: tuple[Descriptor, ...]           # the empty config, then the artifact
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(self.manifest), len(self.manifest))

    def index_entry(self) -> dict[str, Any]:
        """Its entry in an index (index.json, the referrers tag's index): the descriptor
        with its artifactType and the manifest's annotations, as distribution-spec 1.1
        lists referrers."""
        entry = self.descriptor.to_dict()
        entry["artifactType"] = self.artifact_type
        if self.annotations:
            entry["annotations"] = dict(sorted(self.annotations.items()))
        return entry


def attach(store: Store, image: Image, artifact_type: str, data: bytes) -> Referrer:
    """A referrer of ``image`` (its manifest) carrying ``data`` as ``artifact_type``; its
    blobs (the artifact, the empty config, the manifest) are put in ``store``."""
    digest, size = store.blobs.put_bytes(data)
    artifact = Descriptor(artifact_type, digest, size)
    empty = empty_descriptor()
    store.blobs.put_bytes(EMPTY_JSON, empty.digest)
    image_desc = image.manifest_descriptor()
    subject = Descriptor(image_desc.media_type, image_desc.digest, image_desc.size)
    annotations = {ANNOTATION_CREATED: image.config.created} if image.config.created else {}
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.to_dict(),
        "layers": [artifact.to_dict()],
        "subject": subject.to_dict(),
    }
    if annotations:
        doc["annotations"] = annotations
    manifest = canonical_json(doc)
    store.blobs.put_bytes(manifest)
    return Referrer(manifest, artifact_type, subject, (empty, artifact), annotations)


def referrers_tag(subject: Digest) -> str:
    """The tag of the referrers list on a registry without the referrers API
    (distribution-spec 1.1's fallback): ``sha256-<hex>``."""
    return f"{subject.algorithm}-{subject.hex}"[:128]
