"""The build's summary line: the final image against the largest stage."""

from __future__ import annotations

from distill.report.sizes import BuildSizes, StageSize


def stage(label: str, size: int) -> StageSize:
    return StageSize(label, "base", 0, size, 1.0, ())


def test_the_verdict_names_the_largest_stage_once() -> None:
    named = BuildSizes((stage("build", 876_300_000), stage("stage 1", 7_600_000)),
                       7_600_000, 2_900_000)
    assert named.verdict() == ("final image: 7.6 MB (2.9 MB compressed), 115x smaller "
                               "than stage build (876.3 MB)")
    unnamed = BuildSizes((stage("stage 0", 50_000_000), stage("stage 1", 10_000_000)),
                         10_000_000, -1)
    assert unnamed.verdict() == "final image: 10.0 MB, 5.0x smaller than stage 0 (50.0 MB)"
    alone = BuildSizes((stage("stage 0", 10_000_000),), 10_000_000, 4_000_000)
    assert alone.verdict() == "final image: 10.0 MB (4.0 MB compressed)"
