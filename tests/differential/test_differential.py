"""Differential tests: each case under cases/ is built by distill and by a reference builder
(buildah, and BuildKit in Docker's engine: the ``differential`` fixture is parametrized over
both), and the two images must have the same files (type, mode, owner, content, link targets, hardlinks, kept
mtimes) and the same run config. See tests/helpers/compare.py for exactly what is compared
and tests/differential/deliberate.py for the differences that are deliberate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.formats.oci_layout import import_layout
from distill.report.analyze import analyze
from distill.store.store import Store
from tests.differential.cases import CASES, CASES_DIR, CONTEXT_MTIME, SYNTAX
from tests.differential.deliberate import DELIBERATE
from tests.differential.references import REF
from tests.differential.runner import DifferentialRunner

pytestmark = pytest.mark.integration


class DifferentFailure(Exception):
    """A case marked as a known distill bug failed, but not in the way the bug shows."""


def _param(name: str) -> object:
    case = CASES[name]
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.bug)] \
        if case.bug else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_same_image(differential: DifferentialRunner, name: str) -> None:
    case = CASES[name]
    outcome = differential.outcome(case)
    if case.bug and not outcome.ok and case.bug_shows not in outcome.report:
        raise DifferentFailure(f"expected the known bug ({case.bug_shows!r}), got:\n"
                               + outcome.report)
    assert outcome.ok, outcome.report


def test_every_case_is_declared() -> None:
    on_disk = {p.name for p in CASES_DIR.iterdir() if (p / "Dockerfile").is_file()}
    assert on_disk == set(CASES), "cases/ and CASES disagree"
    assert len(CASES) >= 40
    for case in CASES.values():
        assert case.needs <= set(SYNTAX), case.name
        if case.needs:    # builders that lack the syntax build the equivalent instead
            assert case.equivalent and (case.dir / case.equivalent).is_file(), case.name
        for src in case.secrets.values():
            assert (case.dir / src).is_file(), case.name


def test_deliberate_differences_are_explained() -> None:
    for name, rule in DELIBERATE.items():
        assert rule.why.strip().endswith("."), name


def test_mtimes_are_compared(differential: DifferentialRunner) -> None:
    """The mtime rule has teeth: both builders keep a context file's mtime on COPY and a
    time set by RUN, so a builder that dropped them would fail the comparison."""
    outcome = differential.outcome(CASES["copy_dir_contents"])
    assert outcome.snapshots is not None, outcome.report
    for side in outcome.snapshots:
        assert side.mtimes["with-slash/top.txt"] == CONTEXT_MTIME
        assert side.mtimes["deep/er/deeper/leaf.txt"] == CONTEXT_MTIME
    outcome = differential.outcome(CASES["run_metadata_only"])
    assert outcome.snapshots is not None, outcome.report
    for side in outcome.snapshots:
        assert side.mtimes["etc/passwd"] == 1234567890
        assert side.mtimes["bin/busybox"] == 0     # from the base, untouched


def test_summary(differential: DifferentialRunner, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs any case not yet run, prints one line, and checks that exactly the cases marked
    as known distill bugs fail."""
    outcomes = [differential.outcome(case) for case in CASES.values()]
    passed = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    seconds = sum(o.seconds for o in outcomes)
    name = differential.reference.name
    lines = [f"differential vs {name}: {len(passed)} passed, {len(failed)} failed "
             f"({len(outcomes)} cases, {seconds:.0f}s)"]
    for o in failed:
        lines.append(f"  failed: {o.case.name}" + (" (known distill bug)" if o.case.bug else ""))
    used = sorted({d for o in outcomes for d in o.deliberate})
    if used:
        lines.append(f"  deliberate differences applied: {', '.join(used)}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    unexpected = [o.case.name for o in failed
                  if not o.case.bug or o.case.bug_shows not in o.report]
    fixed = [o.case.name for o in passed if o.case.bug]
    assert not unexpected, f"unexpected differences in: {unexpected}"
    assert not fixed, f"marked as distill bugs but now equal (remove the mark): {fixed}"


def analysis_differences(analysis: Any, tree: dict[str, dict[str, Any]]) -> list[str]:
    """Where ``distill analyze``'s view of an image disagrees with umoci's unpack of it
    (``tree``, tests/helpers/readback.tree_snapshot): the paths, their kinds, each regular
    file's size, and the bytes of all regular files (a hard-linked inode counted once)."""
    files = analysis.tree.files
    ours, theirs = set(files), set(tree) - {"."}
    problems = [f"only in analyze: /{p}" for p in sorted(ours - theirs)[:5]]
    problems += [f"only in umoci's unpack: /{p}" for p in sorted(theirs - ours)[:5]]
    for path in sorted(ours & theirs):
        entry, seen = files[path].entry, tree[path]
        kind = "file" if entry.kind == "hardlink" else entry.kind
        if kind != seen["type"] or (entry.kind == "hardlink" and seen["hardlink"] is None):
            problems.append(f"/{path}: {entry.kind} in analyze, {seen['type']} unpacked")
        elif entry.kind == "file" and entry.size != seen["size"]:
            problems.append(f"/{path}: {entry.size} bytes in analyze, {seen['size']} unpacked")
    inodes = {seen["hardlink"] or rel: seen["size"] for rel, seen in tree.items()
              if seen["type"] == "file"}
    if analysis.file_bytes != sum(inodes.values()):
        problems.append(f"file bytes: {analysis.file_bytes} in analyze, "
                        f"{sum(inodes.values())} unpacked")
    return problems


def test_analysis_agrees_with_umoci(differential: DifferentialRunner, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """For every case, ``distill analyze``'s file tree of distill's image (read from its
    layer tars) is what umoci unpacks: same paths, kinds, sizes and total bytes."""
    store = Store(tmp_path / "store")
    passed, failed = 0, []
    for case in CASES.values():
        outcome = differential.outcome(case)
        if outcome.snapshots is None:      # the build failed: test_same_image says why
            continue
        layout = differential.workdir / case.name / "distill.oci"
        analysis = analyze(store, import_layout(store, layout, REF), case.name)
        problems = analysis_differences(analysis, outcome.snapshots[0].tree)
        if problems:
            failed.append(f"  {case.name}: " + "; ".join(problems))
        else:
            passed += 1
    with capsys.disabled():
        print(f"\nanalyze vs umoci: {passed} passed, {len(failed)} failed")
    assert not failed, "\n".join(failed)
    assert passed >= len(CASES) - sum(1 for c in CASES.values() if c.bug)
