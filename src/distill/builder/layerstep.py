"""What every step shares: word expansion, and the cached run-on-a-rootfs-and-commit of a layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from distill.builder.operation import Operation
from distill.builder.stage_context import CacheHit, StageContext
from distill.builder.state import StageState
from distill.dockerfile import instructions as ins
from distill.errors import DistillError
from distill.image.image import Layer
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest


def expand(ctx: StageContext, state: StageState, word: str) -> str:
    return ctx.lexer.process_word(word, state.expansion_env())


def operation(ctx: StageContext, state: StageState, inst: ins.Instruction, *,
              expanded: Mapping[str, object], inputs: Mapping[str, object] | None = None,
              leave_out: frozenset[str] = frozenset()) -> Operation:
    """The record of ``inst`` on the stage's current image, with the build's settings
    that change what a step writes (the SOURCE_DATE_EPOCH clamp of file times)."""
    return Operation.of(inst, tuple(str(d) for d in state.image.config.diff_ids),
                        expanded=expanded, inputs=inputs, leave_out=leave_out,
                        settings={"mtime_clamp": ctx.rootfs.mtime_clamp})


def layer_step(ctx: StageContext, state: StageState, op: Operation,
               created_by: str, work: Callable[[Path], None], *,
               sandbox: bool = False,
               by_content: Callable[[], Operation] | None = None) -> StageState:
    """Run ``work`` on a writable rootfs, turning its changes into a layer; cached by the
    operation's key (a step that changes no file is cached as such).

    ``by_content``: a second record, keyed on the content of what the step reads rather
    than on its inputs' identities, asked for only when the first key misses (BuildKit's
    "slow" content key): a stage rebuilt elsewhere into other layers with the same files
    still hits. A result is stored under both keys.

    ``sandbox``: the rootfs is the idmapped view a RUN step works in."""
    image = state.image
    key = op.key
    hit = ctx.cache_lookup(key)
    content_key = None
    if hit is None and by_content is not None:
        content_key = by_content().key
        hit = ctx.cache_lookup(content_key)
        if hit is not None:
            ctx.cache_alias(key, content_key)
    layer: Layer | None = None
    if hit is not None:
        layer = hit.layer
        ctx.steps.end("CACHED", _added(layer))
    else:
        ctx.processes.check()       # another stage failed: start no more work
        with ctx.rootfs.changes(image, sandbox=sandbox, lazy=not ctx.shipped) as changes:
            work(changes.mount.merged)
        layer = changes.layer
        ctx.cache_store(key, layer, also=content_key)
        ctx.steps.end("DONE", _added(layer))
    if layer is None:
        return state.with_image(image.add_history(created_by, empty_layer=True))
    return state.with_image(image.append_layer(layer, created_by))


def _added(layer: Layer | None) -> int:
    return 0 if layer is None else layer.uncompressed_size


def layer_to_cache(layer: Layer | None, created: str | None = None) -> dict[str, object]:
    value: dict[str, object]
    if layer is None:
        value = {"empty": True}
    elif layer.blob is None:     # lazy: the store's snapshot holds it (see RootfsManager)
        value = {"snapshot": True, "diff_id": str(layer.diff_id),
                 "size": layer.uncompressed_size}
    else:
        value = {"blob": layer.blob.to_dict(), "diff_id": str(layer.diff_id),
                 "size": layer.uncompressed_size}
    if created:
        value["created"] = created   # when the step first ran (the image's time on a rebuild)
    return value


def layer_from_cache(value: dict[str, object]) -> CacheHit | None:
    """The result a cache entry records; None if the entry is unreadable."""
    if value.get("empty") is True:
        return CacheHit(None)
    try:
        blob = None if "blob" not in value and value.get("snapshot") is True else \
            Descriptor.from_dict(value["blob"])  # type: ignore[arg-type]
        return CacheHit(Layer(blob, Digest(str(value["diff_id"])),
                              int(value["size"])))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError, DistillError):
        return None
