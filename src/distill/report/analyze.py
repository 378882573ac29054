"""``distill analyze``'s figures for one image: its layers, the instruction that made each,
its file tree, what the stacking wasted, its largest files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from distill.errors import DigestMismatchError, ImageError
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.report.filetree import FileTree, Placed, stack
from distill.report.layerfiles import Budget, Collector, LayerFiles, read_layer
from distill.store.store import Store


@dataclass(frozen=True)
class LayerReport:
    index: int
    diff_id: str
    digest: str               # the blob's
    compressed: int
    uncompressed: int
    created_by: str           # the instruction that made it, from the image's history
    entries: int              # tar members, deletions not counted
    deletions: int
    file_bytes: int           # regular files' bytes in this layer


@dataclass
class Analysis:
    name: str
    image: Image
    layers: list[LayerReport]
    tree: FileTree
    layer_files: list[LayerFiles] = field(repr=False, default_factory=list)

    @property
    def compressed(self) -> int:
        """-1 when a layer has no blob (a stage no output ships is never compressed)."""
        sizes = [layer.compressed for layer in self.layers]
        return -1 if any(n < 0 for n in sizes) else sum(sizes)

    @property
    def uncompressed(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)

    @property
    def file_bytes(self) -> int:
        """Bytes of the regular files the final image shows."""
        return sum(p.entry.size for p in self.tree.regular_files())

    @property
    def user_wasted_percent(self) -> float:
        """dive's figure: wasted bytes over the bytes of every layer but the first."""
        user = sum(layer.uncompressed for layer in self.layers[1:])
        return 100.0 * self.tree.wasted_bytes / user if user else 0.0

    def largest(self, n: int = 10) -> list[Placed]:
        return sorted(self.tree.regular_files(),
                      key=lambda p: (-p.entry.size, p.entry.path))[:n]

    def to_json(self, top: int = 10) -> dict[str, Any]:
        runtime = self.image.runtime
        return {
            "image": self.name,
            # a stage no output ships has no blobs, so no manifest: no digest
            "digest": "" if any(layer.blob is None for layer in self.image.layers)
            else str(self.image.digest),
            "platform": str(self.image.config.platform.normalized()),
            "user": runtime.user or "",
            "size": {"compressed": self.compressed, "uncompressed": self.uncompressed,
                     "files": self.file_bytes},
            "efficiency": round(self.tree.efficiency, 6),
            "wasted_bytes": self.tree.wasted_bytes,
            "user_wasted_percent": round(self.user_wasted_percent, 4),
            "dive_wasted_bytes": self.tree.dive_wasted_bytes,
            "layers": [vars(layer) for layer in self.layers],
            "wasted": [{"path": "/" + w.path, "by_layer": w.by, "bytes": w.bytes,
                        "added_in": list(w.added)} for w in self.tree.waste],
            "largest": [{"path": "/" + p.entry.path, "size": p.entry.size,
                         "layer": p.layer} for p in self.largest(top)],
            "tree": tree_json(self.tree),
        }


def layer_instructions(image: Image) -> list[str]:
    """The history entry of each layer (those not marked empty), in order; "" where the
    history does not say (an image whose history does not match its layers)."""
    made = [h.created_by for h in image.config.history if not h.empty_layer]
    if len(made) != len(image.layers):
        return [""] * len(image.layers)
    return made


#: the uncompressed tar of a layer that has no blob yet (a build stage no output ships)
LazyOpener = Callable[[Layer], AbstractContextManager[BinaryIO]]


def analyze(store: Store, image: Image, name: str,
            collectors: Sequence[Collector] = (), lazy: LazyOpener | None = None) -> Analysis:
    """Read every layer of ``image`` (its blobs in ``store``; a lazy one's tar through
    ``lazy``) once."""
    made = layer_instructions(image)
    reports = []
    files_per_layer = []
    budget = Budget()            # what every layer's collectors may be given, in all
    for index, layer in enumerate(image.layers):
        blob = layer.blob
        what = f"layer {index + 1} ({blob.digest if blob else layer.diff_id})"
        if blob is None and lazy is None:
            raise ImageError(f"{what} has no blob yet")
        with (store.blobs.open(blob.digest) if blob else lazy(layer)) as raw:  # type: ignore[misc]
            files, diff_id, size = read_layer(
                raw, blob.media_type if blob else mt.OCI_LAYER_TAR, what, collectors, budget)
        if diff_id != layer.diff_id:
            raise DigestMismatchError(f"{what} unpacks to {diff_id}, but the image config "
                                      f"says {layer.diff_id}")
        files_per_layer.append(files)
        reports.append(LayerReport(
            index=index, diff_id=str(layer.diff_id), digest=str(blob.digest) if blob else "",
            compressed=blob.size if blob else -1,
            uncompressed=size,
            created_by=made[index], entries=len(files.entries),
            deletions=len(files.deleted) + len(files.opaque),
            file_bytes=sum(e.size for e in files.entries if e.kind == "file")))
    return Analysis(name, image, reports, stack(files_per_layer), files_per_layer)


def tree_json(tree: FileTree, max_depth: int = 64) -> dict[str, Any]:
    """The final view as nested directories with their sizes (regular files' bytes)."""
    sizes = tree.dir_sizes()
    root: dict[str, Any] = {"name": "/", "size": sizes.get("", 0), "children": []}
    nodes = {"": root}
    for path in sorted(tree.files):
        placed = tree.files[path]
        parent = nodes.get(path.rpartition("/")[0])
        if parent is None or path.count("/") >= max_depth:
            continue
        entry = placed.entry
        node: dict[str, Any] = {"name": entry.name, "size": sizes.get(path, 0)
                                if entry.kind == "dir" else entry.size,
                                "kind": entry.kind, "layer": placed.layer}
        if entry.kind == "dir":
            node["children"] = []
            nodes[path] = node
        elif entry.link:
            node["link"] = entry.link
        parent["children"].append(node)
    return root
