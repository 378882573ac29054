"""Images as values: a config plus an ordered tuple of layers. Changes return new images."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from distill.oci import mediatypes as mt
from distill.oci.config import History, ImageConfig, RuntimeConfig
from distill.oci.descriptor import Descriptor, canonical_json
from distill.oci.digest import Digest


@dataclass(frozen=True)
class Layer:
    #: the compressed blob as a manifest lists it; None for a layer this build made
    #: and has not compressed yet ("lazy": its snapshot holds it, and
    #: ``RootfsManager.materialize`` makes the blob when an output or a cache needs one)
    blob: Descriptor | None
    diff_id: Digest           # sha256 of the uncompressed tar
    uncompressed_size: int

    @property
    def compressed(self) -> Descriptor:
        """The blob; a lazy layer here is a bug (outputs materialize images first)."""
        if self.blob is None:
            raise ValueError(f"layer {self.diff_id} has no blob yet (materialize the image)")
        return self.blob


@dataclass(frozen=True)
class Image:
    config: ImageConfig
    layers: tuple[Layer, ...] = ()

    # -- mutate (each returns a new Image) ------------------------------------
    def append_layer(self, layer: Layer, created_by: str) -> Image:
        cfg = replace(
            self.config,
            diff_ids=self.config.diff_ids + (layer.diff_id,),
            history=self.config.history + (History(created_by=created_by),),
        )
        return Image(cfg, self.layers + (layer,))

    def add_history(self, created_by: str, empty_layer: bool = True) -> Image:
        h = History(created_by=created_by, empty_layer=empty_layer)
        return Image(replace(self.config, history=self.config.history + (h,)), self.layers)

    def with_runtime(self, runtime: RuntimeConfig) -> Image:
        return Image(replace(self.config, config=runtime), self.layers)

    def with_created(self, created: str | None) -> Image:
        history = tuple(
            h if h.created else replace(h, created=created) for h in self.config.history
        )
        return Image(replace(self.config, created=created, history=history), self.layers)

    @property
    def runtime(self) -> RuntimeConfig:
        return self.config.config

    # -- serialisation ---------------------------------------------------------
    def config_bytes(self) -> bytes:
        return canonical_json(self.config.to_dict())

    def config_descriptor(self) -> Descriptor:
        data = self.config_bytes()
        return Descriptor(mt.OCI_CONFIG, Digest.of_bytes(data), len(data))

    def manifest_dict(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": self.config_descriptor().to_dict(),
            "layers": [layer.compressed.to_dict() for layer in self.layers],
        }
        if annotations:
            d["annotations"] = dict(sorted(annotations.items()))
        return d

    def manifest_bytes(self) -> bytes:
        return canonical_json(self.manifest_dict())

    def manifest_descriptor(self) -> Descriptor:
        data = self.manifest_bytes()
        return Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(data), len(data),
                          platform=self.config.platform)

    @property
    def digest(self) -> Digest:
        return self.manifest_descriptor().digest

    def compressed_size(self) -> int:
        """The blobs' sizes (a lazy layer, not compressed yet, counts as 0)."""
        return sum(layer.blob.size for layer in self.layers if layer.blob is not None)

    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)

