"""What every stage left behind: its base, the bytes each step added, its time; and the
final image against the largest stage ("186x smaller than stage build").

Sizes are uncompressed (what a layer holds on disk once unpacked, comparable across
stages: a stage no output ships is never compressed); the final image's compressed
size (what a registry stores and a pull moves) is given beside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from distill.image.image import Image

#: a size nobody has measured yet (a pulled base layer not unpacked)
UNKNOWN = -1


@dataclass(frozen=True)
class StepSize:
    instruction: str
    added: int                 # uncompressed bytes of the step's layer (0: none)
    seconds: float | None
    cached: bool


@dataclass(frozen=True)
class StageSize:
    label: str
    base: str                  # what FROM names
    base_size: int
    size: int
    seconds: float | None
    steps: tuple[StepSize, ...]


@dataclass(frozen=True)
class BuildSizes:
    stages: tuple[StageSize, ...]
    final_size: int
    final_compressed: int       # UNKNOWN when the final image has no blobs yet

    def largest(self) -> StageSize | None:
        known = [s for s in self.stages if s.size >= 0]
        return max(known, key=lambda s: s.size) if known else None

    def verdict(self) -> str:
        """The final image in one line, against the largest stage."""
        compressed = "" if self.final_compressed < 0 else \
            f" ({human(self.final_compressed)} compressed)"
        line = f"final image: {human(self.final_size)}{compressed}"
        largest = self.largest()
        if largest is None or self.final_size < 0 or largest.size <= self.final_size \
                or len(self.stages) < 2:
            return line
        ratio = largest.size / max(self.final_size, 1)
        times = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
        return (f"{line}, {times} smaller than {stage_name(largest.label)} "
                f"({human(largest.size)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> BuildSizes:
        stages = tuple(StageSize(**{**s, "steps": tuple(StepSize(**t) for t in s["steps"])})
                       for s in value["stages"])
        return cls(stages, int(value["final_size"]), int(value["final_compressed"]))

    def without_times(self) -> BuildSizes:
        """The same sizes with no times (a replay: the times were another build's)."""
        stages = tuple(StageSize(s.label, s.base, s.base_size, s.size, None,
                                 tuple(StepSize(t.instruction, t.added, None, t.cached)
                                       for t in s.steps)) for s in self.stages)
        return BuildSizes(stages, self.final_size, self.final_compressed)


def stage_name(label: str) -> str:
    """"stage build" for a named stage, "stage 0" for an unnamed one (whose label
    already says it)."""
    return label if label.startswith("stage ") else f"stage {label}"


def image_size(image: Image) -> int:
    """Uncompressed bytes of the image's layers; UNKNOWN if any is not known."""
    sizes = [layer.uncompressed_size for layer in image.layers]
    return UNKNOWN if any(n < 0 for n in sizes) else sum(sizes)


def compressed_size(image: Image) -> int:
    if any(layer.blob is None for layer in image.layers):
        return UNKNOWN
    return sum(layer.compressed.size for layer in image.layers)


def human(n: int) -> str:
    if n < 0:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
