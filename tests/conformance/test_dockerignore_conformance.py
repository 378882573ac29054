""".dockerignore conformance: moby/patternmatcher v0.6.1 and its ignorefile reader.

The data is transcribed from upstream's Go test tables (see the data README, section 4):
dockerignore/patternmatcher_test.json and dockerignore/ignorefile_test.json. Every case is
its own test; cases marked for Windows only would be skipped (there are none: the single
"non-windows" case runs here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.errors import ContextError
from distill.ignore import (
    BAD_PATTERN,
    MatchInfo,
    PatternMatcher,
    translate,
    read_ignore_file,
)

DATA = Path(__file__).resolve().parent / "data" / "dockerignore"


@dataclass(frozen=True)
class Vector:
    """One conformance check: an id and a callable that raises AssertionError on failure."""

    id: str
    check: Callable[[], None]
    skip: str | None = None


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _skip_reason(case: dict[str, Any]) -> str | None:
    return "Windows-only case" if case.get("platforms") == "windows" else None


# --- the ways upstream's TestMatches evaluates one (patterns, path) pair ------------------

def _walk_with_info(pm: PatternMatcher, path: str) -> bool:
    """MatchesUsingParentResults, fed the MatchInfo of each parent directory in turn
    (upstream derives the parents with filepath.Dir, as here)."""
    parent = path[: path.rfind("/")] if "/" in path else ""
    info = MatchInfo()
    if parent and parent != ".":
        dirs = parent.split("/")
        for i in range(len(dirs)):
            _, info = pm.match_with_parent_info("/".join(dirs[: i + 1]), info)
    return pm.match_with_parent_info(path, info)[0]


def _walk_with_bool(pm: PatternMatcher, path: str) -> bool:
    """The deprecated MatchesUsingParentResult, chained the same way."""
    parent = path[: path.rfind("/")] if "/" in path else ""
    matched = False
    if parent and parent != ".":
        dirs = parent.split("/")
        for i in range(len(dirs)):
            matched = pm.matches_using_parent_results("/".join(dirs[: i + 1]), matched)
    return pm.matches_using_parent_results(path, matched)


def _expect_matches(patterns: list[str], path: str, expected: bool, *, deprecated: bool) -> None:
    pm = PatternMatcher(patterns)
    got = {
        "MatchesOrParentMatches": pm.matches_or_parent_matches(path),
        "MatchesUsingParentResults": _walk_with_info(pm, path),
        "MatchesUsingParentResults(no context)": pm.matches_using_parent_results(path, MatchInfo()),
    }
    if deprecated:
        got["MatchesUsingParentResult"] = _walk_with_bool(pm, path)
    wrong = {name: value for name, value in got.items() if value != expected}
    assert not wrong, f"patterns={patterns!r} path={path!r}: expected {expected}, got {wrong}"


def _expect_bad_pattern(call: Callable[[], object]) -> None:
    with pytest.raises(ContextError) as info:
        call()
    assert info.value.message == BAD_PATTERN


def _package_matches(path: str, patterns: list[str]) -> bool:
    """Upstream's package-level Matches(path, patterns): New, then the (deprecated) Matches."""
    return PatternMatcher(patterns).matches(path)


# --- vectors ---------------------------------------------------------------------------

def _single_pattern(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            _expect_matches([case["pattern"]], case["path"], case["match"], deprecated=True)
        yield Vector(f"single_pattern[{n:02d}]:{case['pattern']}:{case['path']}", check,
                     _skip_reason(case))


def _multi_pattern(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            # upstream runs the multi-pattern table only through the non-deprecated methods
            _expect_matches(case["patterns"], case["path"], case["match"], deprecated=False)
        yield Vector(f"multi_pattern[{n}]:{','.join(case['patterns'])}:{case['path']}", check)


def _filepath_match_style(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            pattern, path = case["pattern"], case["path"]
            if case["error"] is not None:
                assert case["error"] == BAD_PATTERN
                _expect_bad_pattern(lambda: _package_matches(path, [pattern]))
                return
            assert _package_matches(path, [pattern]) == case["match"]
            # measured upstream: the .dockerignore methods agree on every one of these
            _expect_matches([pattern], path, case["match"], deprecated=False)
        yield Vector(f"filepath_match_style[{n:02d}]:{case['pattern']}:{case['path']}", check,
                     _skip_reason(case))


def _matches_function(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            def run() -> bool:
                return _package_matches(case["path"], case["patterns"])
            if case.get("error") is True:
                with pytest.raises(ContextError):
                    run()
                return
            result = run()  # error false or absent: must not raise
            if "match" in case:
                assert result == case["match"]
        yield Vector(f"matches_function[{n:02d}]:{case['test']}", check)


def _new_matcher(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            if case.get("error"):
                with pytest.raises(ContextError):
                    PatternMatcher(case["patterns"])
                return
            pm = PatternMatcher(case["patterns"])
            if "pattern_count" in case:
                assert len(pm.patterns) == case["pattern_count"]
            if "exclusions" in case:
                assert pm.exclusions == case["exclusions"]
        yield Vector(f"new_matcher[{n}]:{'|'.join(case['patterns'])}", check)


def _bad_pattern_every_call(case: dict[str, Any]) -> Iterator[Vector]:
    def check() -> None:
        pm = PatternMatcher(case["patterns"])  # new_error false: New accepts it
        assert case["new_error"] is False
        assert case["match_error"] == BAD_PATTERN
        for _ in range(case["calls"]):
            _expect_bad_pattern(lambda: pm.matches_or_parent_matches(case["path"]))
    yield Vector("bad_pattern_is_reported_on_every_call", check)


def _internal_compile(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            pattern = case["pattern"]
            assert translate(pattern) == (case["match_type"], case["compiled_regexp"])
            windows = translate(pattern.replace("/", "\\"), sep="\\")
            assert windows == (case["match_type"], case["windows_compiled_regexp"])
        yield Vector(f"internal_compile[{n:02d}]:{case['pattern']}", check)


def _ignorefile(data: dict[str, Any]) -> Iterator[Vector]:
    for n, case in enumerate(data["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            assert read_ignore_file(case["content"]) == case["expected"]
        yield Vector(f"ignorefile[{n}]", check)


def _vectors() -> list[Vector]:
    pm = _load("patternmatcher_test.json")
    out: list[Vector] = []
    out += _single_pattern(pm["single_pattern"])
    out += _multi_pattern(pm["multi_pattern"])
    out += _filepath_match_style(pm["filepath_match_style"])
    out += _matches_function(pm["matches_function"])
    out += _new_matcher(pm["new_matcher"])
    out += _bad_pattern_every_call(pm["bad_pattern_is_reported_on_every_call"])
    out += _internal_compile(pm["internal_compile"])
    out += _ignorefile(_load("ignorefile_test.json"))
    return out


VECTORS = _vectors()
EXPECTED_COUNTS = {
    "single_pattern": 68, "multi_pattern": 4, "filepath_match_style": 54,
    "matches_function": 11, "new_matcher": 6, "bad_pattern_is_reported_on_every_call": 1,
    "internal_compile": 21, "ignorefile": 2,
}


def test_vector_counts() -> None:
    counts: dict[str, int] = {}
    for vector in VECTORS:
        section = vector.id.split("[", 1)[0].split(":", 1)[0]
        counts[section] = counts.get(section, 0) + 1
    assert counts == EXPECTED_COUNTS
    assert not [v.id for v in VECTORS if v.skip], "no Windows-only case is expected"


LINUX_VECTORS = [v for v in VECTORS if not v.skip]  # Windows-only vectors do not apply


@pytest.mark.parametrize("vector", LINUX_VECTORS, ids=[v.id for v in LINUX_VECTORS])
def test_dockerignore_vector(vector: Vector) -> None:
    vector.check()


def test_dockerignore_conformance_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert VECTORS, f"no conformance data at {DATA}"
    failed: list[str] = []
    run = [v for v in VECTORS if not v.skip]
    for vector in run:
        try:
            vector.check()
        except (Exception, pytest.fail.Exception):  # noqa: BLE001 - any failure counts
            failed.append(vector.id)
    with capsys.disabled():
        print(f"\ndockerignore conformance: {len(run) - len(failed)} passed, {len(failed)} failed")
    assert not failed, failed
