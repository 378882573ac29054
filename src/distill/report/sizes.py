"""What every stage left behind: sizes per stage and for the final image."""

from __future__ import annotations

from dataclasses import dataclass

from distill.image.image import Image


@dataclass(frozen=True)
class SizeRow:
    label: str
    layers: int
    compressed: int
    uncompressed: int
    added_layers: int
    added_compressed: int
    added_uncompressed: int
    seconds: float | None = None
    #: some layers were never compressed (a stage no output ships): no compressed size
    lazy: bool = False


def size_row(label: str, image: Image, base: Image | None = None,
             seconds: float | None = None) -> SizeRow:
    base_layers = len(base.layers) if base is not None else 0
    added = image.layers[base_layers:]
    return SizeRow(
        label=label,
        layers=len(image.layers),
        compressed=image.compressed_size(),
        uncompressed=image.uncompressed_size(),
        added_layers=len(added),
        added_compressed=sum(layer.blob.size for layer in added if layer.blob is not None),
        added_uncompressed=sum(max(layer.uncompressed_size, 0) for layer in added),
        seconds=seconds,
        lazy=any(layer.blob is None for layer in image.layers),
    )


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
