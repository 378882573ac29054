"""Moving Images in and out of a Store."""

from __future__ import annotations

from distill.errors import ImageError
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import ImageConfig
from distill.oci.descriptor import Descriptor, load_json
from distill.oci.digest import Digest
from distill.oci.reference import normalize_name
from distill.store.store import LayerFacts, Store


def save(store: Store, image: Image) -> Descriptor:
    """Write config and manifest blobs (layers are already in the store)."""
    for layer in image.layers:
        if not store.blobs.has(layer.compressed.digest):
            raise ImageError(f"layer {layer.compressed.digest} is not in the store")
    store.blobs.put_bytes(image.config_bytes())
    store.blobs.put_bytes(image.manifest_bytes())
    return image.manifest_descriptor()


def load(store: Store, manifest: Digest) -> Image:
    """Read an image whose blobs are all in the store."""
    doc = load_json(store.blobs.read(manifest), f"manifest {manifest}")
    media_type = doc.get("mediaType", mt.OCI_MANIFEST)
    if media_type in mt.INDEXES:
        return load(store, pick_platform_manifest(doc).digest)
    if media_type not in mt.MANIFESTS:
        raise ImageError(f"manifest {manifest} has unsupported media type {media_type!r}")
    try:
        config_desc = Descriptor.from_dict(doc["config"])
        layer_descs = [Descriptor.from_dict(x) for x in doc.get("layers") or []]
    except (KeyError, TypeError) as e:
        raise ImageError(f"manifest {manifest} is malformed: {e}") from None
    config = ImageConfig.from_dict(load_json(store.blobs.read(config_desc.digest), "image config"))
    if len(config.diff_ids) != len(layer_descs):
        raise ImageError(f"image {manifest}: {len(layer_descs)} layers but "
                         f"{len(config.diff_ids)} diff_ids")
    layers = []
    for desc, diff_id in zip(layer_descs, config.diff_ids):
        facts = store.layer_facts(desc.digest)
        size = facts.uncompressed_size if facts else -1
        layers.append(Layer(desc, diff_id, size))
    return Image(config, tuple(layers))


def pick_platform_manifest(index: dict[str, object]) -> Descriptor:
    from distill.oci.platform import Platform

    host = Platform.host()
    entries = index.get("manifests")
    manifests = [Descriptor.from_dict(m) for m in entries
                 if isinstance(m, dict)] if isinstance(entries, list) else []
    for m in manifests:
        if m.media_type in mt.MANIFESTS and (m.platform is None or
                                             (m.platform.os, m.platform.architecture)
                                             == (host.os, host.architecture)):
            return m
    raise ImageError(f"no manifest for platform {host} in the index")


def record_facts(store: Store, layer: Layer) -> None:
    store.record_layer(layer.compressed.digest,
                       LayerFacts(layer.diff_id, layer.uncompressed_size))


def with_known_sizes(store: Store, image: Image) -> Image:
    """``image`` with the uncompressed sizes of its layers that the store has learnt since
    it was loaded (a pulled layer's are known once it is unpacked)."""
    layers = []
    for layer in image.layers:
        if layer.uncompressed_size < 0 and layer.blob is not None:
            facts = store.layer_facts(layer.blob.digest)
            if facts is not None and facts.diff_id == layer.diff_id:
                layer = Layer(layer.blob, layer.diff_id, facts.uncompressed_size)
        layers.append(layer)
    return Image(image.config, tuple(layers))


def tag_in_store(store: Store, image: Image, names: tuple[str, ...]) -> None:
    """Save ``image`` and tag it with each of ``names``."""
    desc = save(store, image)
    for name in names:
        store.names.tag(normalize_name(name), desc)
