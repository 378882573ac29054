"""What every step shares: word expansion, and the cached run-on-a-rootfs-and-commit of a layer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from distill.build.state import StageState
from distill.errors import DistillError
from distill.image.image import Layer
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest

if TYPE_CHECKING:
    from distill.build.builder import StageContext


def expand(ctx: StageContext, state: StageState, word: str) -> str:
    return ctx.lexer.process_word(word, state.expansion_env())


def layer_step(ctx: StageContext, state: StageState, signature: list[object],
                created_by: str, work: Callable[[Path], None], *,
                sandbox: bool = False) -> StageState:
    """Run ``work`` on a writable rootfs, turning its changes into a layer; cached by signature.

    ``sandbox``: the rootfs is the idmapped view a RUN step works in."""
    image = state.image
    key = hashlib.sha256(json.dumps(
        [[str(d) for d in image.config.diff_ids], signature, ctx.rootfs.mtime_clamp],
        sort_keys=True).encode()).hexdigest()
    layer: Layer | None = None
    hit = ctx.cache_lookup(key)
    if hit is not None:
        ctx.log("CACHED")
        layer = hit.layer
    else:
        with ctx.rootfs.changes(image, sandbox=sandbox) as changes:
            work(changes.mount.merged)
        layer = changes.layer
        ctx.cache_store(key, layer)
    if layer is None:
        return state.with_image(image.add_history(created_by, empty_layer=True))
    return state.with_image(image.append_layer(layer, created_by))


@dataclass(frozen=True)
class CacheHit:
    """A step's cached result: its layer, or None for a step that changed no file."""

    layer: Layer | None


def layer_to_cache(layer: Layer | None, created: str | None = None) -> dict[str, object]:
    value: dict[str, object] = {"empty": True} if layer is None else {
        "blob": layer.blob.to_dict(), "diff_id": str(layer.diff_id),
        "size": layer.uncompressed_size}
    if created:
        value["created"] = created   # when the step first ran (the image's time on a rebuild)
    return value


def layer_from_cache(value: dict[str, object]) -> CacheHit | None:
    """The result a cache entry records; None if the entry is unreadable."""
    if value.get("empty") is True:
        return CacheHit(None)
    try:
        return CacheHit(Layer(Descriptor.from_dict(value["blob"]),  # type: ignore[arg-type]
                              Digest(str(value["diff_id"])),
                              int(value["size"])))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError, DistillError):
        return None
