"""``distill build --report FILE.html``: the build's sizes, the final image and the
largest stage side by side as treemaps, and the final image's security findings, in
one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.builder.scheduler import Builder, BuildResult
from distill.errors import os_failure
from distill.image.image import Image
from distill.report.analyze import analyze
from distill.report.html import render_html
from distill.report.security import SecretsCollector, findings, findings_json
from distill.report.sizes import BuildSizes, stage_name
from distill.store.store import Store


def report(store: Store, builder: Builder, result: BuildResult, image: Image,
           sizes: BuildSizes, names: tuple[str, ...]) -> dict[str, Any]:
    name = names[0] if names else str(image.digest)
    final = analyze(store, image, name, [SecretsCollector()])
    images = [{"label": "final image", **final.to_json()}]
    largest = sizes.largest()
    by_label = {s.name or f"stage {s.index}": s for s in result.stages}
    stage = by_label.get(largest.label) if largest else None
    if stage is not None and largest is not None and largest.size > final.uncompressed \
            and stage.image.config.diff_ids != image.config.diff_ids:
        biggest = analyze(store, stage.image, stage_name(largest.label),
                          lazy=builder.rootfs.lazy_tar)
        images.append({"label": f"largest stage: {largest.label}", **biggest.to_json()})
    return {
        "title": f"distill build report: {name}",
        "images": images,
        "stages": [{"label": s.label, "base": s.base, "base_size": s.base_size,
                    "size": s.size, "seconds": s.seconds,
                    "steps": [{"instruction": t.instruction, "added": t.added,
                               "seconds": t.seconds, "cached": t.cached} for t in s.steps]}
                   for s in sizes.stages],
        "final_vs_largest": sizes.verdict(),
        "security": findings_json(findings(final)),
    }


def write_report(path: Path, store: Store, builder: Builder, result: BuildResult,
                 image: Image, sizes: BuildSizes, names: tuple[str, ...]) -> None:
    html = render_html(report(store, builder, result, image, sizes, names))
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as e:
        raise os_failure(e, "could not write the report to", path) from None
