"""The hostile-input corpus (issue 13, item 4): every file under tests/hostile/cases/ is one
hostile input (base layers, OCI layouts that lie, build contexts, ADD archives), run
here with the real ``distill`` CLI in a directory and a store of its own.

Each case ends in a correct image or a clear error (exit code 1, its ``error:`` text, no
traceback, no hang), and whatever the outcome:

* the canary (``tests/hostile/harness.py``: a directory outside the context, the store and
  the output, at which the attacks aim) is byte-for-byte and metadata-unchanged (mode,
  owner, size, inode, link count, mtime, ctime, xattrs) and nothing new appeared in it;
* nothing new appeared beside the case's context, layouts, store and output;
* its secret appears in no output of distill's and in no file of the image;
* ``distill store verify`` passes on the case's store.

``test_hostile_summary`` prints ``hostile corpus: N passed, N failed`` and fails unless
exactly the cases marked as known distill bugs fail. Cases marked with ``bug=`` are strict
xfails: the expectation they keep is the correct one.

    .venv/bin/pytest -q tests/integration/test_hostile_corpus.py
    .venv/bin/pytest -q tests/integration/test_hostile_corpus.py -k layer_dotdot
"""

from __future__ import annotations

import gzip
import importlib
import os
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DISTILL
from tests.helpers.rootless import ROOTLESS, needs_root
from tests.hostile.harness import SECRET, Base, Case, Hostile, snapshot, walk

pytestmark = pytest.mark.integration

CASES_DIR = Path(__file__).resolve().parents[1] / "hostile" / "cases"
FAMILIES = ("layer", "import", "layout", "ctx", "add")


def _load() -> dict[str, tuple[Case, str]]:
    found: dict[str, tuple[Case, str]] = {}
    for path in sorted(CASES_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = importlib.import_module(f"tests.hostile.cases.{path.stem}")
        found[path.stem] = (module.CASE, module.__doc__ or "")
    return found


CASES = _load()


@dataclass
class Outcome:
    name: str
    problems: list[str]
    report: str
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems


class DifferentFailure(Exception):
    """A case marked as a known distill bug failed otherwise than the bug shows (not an
    AssertionError, so its xfail does not hide it)."""


_OUTCOMES: dict[str, Outcome] = {}


@pytest.fixture(scope="module")
def hostile_base(busybox_tar: Path) -> Base:
    plain = busybox_tar.read_bytes()
    return Base(busybox_tar, plain, gzip.compress(plain, compresslevel=1, mtime=0))


def _files_under(root: Path) -> Iterator[Path]:
    for path in walk(root):
        if not path.is_symlink() and path.is_file():
            yield path


def _run_case(name: str, base: Base, tmp: Path) -> Outcome:
    case, _ = CASES[name]
    started = time.monotonic()
    problems: list[str] = []
    proc: subprocess.CompletedProcess[str] | None = None
    argv: list[str] = []

    def run(*args: str, check: bool = True, timeout: float = 120.0,
            prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DISTILL_ROOT": str(h.store)}
        p = subprocess.run([*(prefix or []), DISTILL, *args], check=False, capture_output=True,
                           text=True, env=env, timeout=timeout, errors="surrogateescape")
        if check and p.returncode != 0:
            raise AssertionError(f"setup: distill {' '.join(args)} failed "
                                 f"({p.returncode}):\n{p.stderr[-3000:]}")
        return p

    h = Hostile(tmp, base, run)
    before = snapshot(h.canary)
    made = set(os.listdir(tmp))
    try:
        case.setup(h)
        made = set(os.listdir(tmp)) | {"out", "store", "build.stderr"}
        if h.command is not None:
            argv = h.command
        else:
            assert (h.ctx / "Dockerfile").exists(), "the case wrote no Dockerfile"
            argv = ["build", "--progress", "plain", "--output", f"type=local,dest={h.out}",
                    *h.args, str(h.ctx)]
        try:
            proc = run(*argv, check=False, timeout=h.timeout, prefix=h.prefix)
        except subprocess.TimeoutExpired:
            problems.append(f"distill {argv[0]} hung (killed after {h.timeout:.0f}s)")
        if proc is not None:
            (tmp / "build.stderr").write_text(proc.stderr, errors="surrogateescape")
            said = proc.stdout + proc.stderr
            error = " | ".join(line for line in proc.stderr.splitlines()
                               if line.startswith("error: ")) or \
                f"(no error: line; the last: {(proc.stderr.strip().splitlines() or [''])[-1]})"
            if "Traceback" in said:
                problems.append("a Python traceback: " + said.strip().splitlines()[-1])
            if SECRET.strip().decode() in said:
                problems.append("the canary's secret appears in distill's output")
            if case.error is not None and proc.returncode == 0:
                problems.append(f"distill {argv[0]} succeeded, expected a clear error")
            elif case.error is not None:
                if proc.returncode != 1:
                    problems.append(f"exit code {proc.returncode}, expected 1 (a clear "
                                    f"error): {error}")
                elif "error: " not in proc.stderr:
                    problems.append("no 'error: ' line")
                if case.error not in proc.stderr:
                    problems.append(f"{case.error!r} is not in stderr: {error}")
            elif proc.returncode != 0:
                problems.append(f"distill {argv[0]} failed (exit {proc.returncode}), expected "
                                f"success: {error}")
            else:
                assert case.check is not None
                try:
                    case.check(h)
                except AssertionError as e:
                    problems.append(f"wrong result: {e}")
        if h.out.exists():
            for path in _files_under(h.out):
                if SECRET.strip() in path.read_bytes():
                    problems.append(f"the canary's secret is in the image: {path}")
    except Exception:  # noqa: BLE001 (a broken case or harness: reported, not raised)
        problems.append("the case could not run:\n" + traceback.format_exc())
    stray = set(os.listdir(tmp)) - made
    if stray:
        problems.append(f"new files beside the build (outside the image and the store): "
                        f"{sorted(stray)}")
    after = snapshot(h.canary)
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k))
        problems.append(f"THE CANARY CHANGED (written outside the build): {changed}")
    if h.store.exists():
        verify = run("store", "verify", check=False)
        if verify.returncode != 0:
            problems.append(f"distill store verify failed:\n{verify.stdout}{verify.stderr}")
    for path in h.remove_after:    # shutil.rmtree recurses: pytest's cleanup would crash
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)
    report = "\n".join(problems)
    if proc is not None and problems:
        report += (f"\n--- distill {argv[0]} exit {proc.returncode}, stderr (last 3000 chars):\n"
                   + proc.stderr[-3000:])
    return Outcome(name, problems, report, time.monotonic() - started)


def _outcome(name: str, base: Base, factory: pytest.TempPathFactory) -> Outcome:
    if name not in _OUTCOMES:
        _OUTCOMES[name] = _run_case(name, base, factory.mktemp(f"hostile-{name}"))
    return _OUTCOMES[name]


def _param(name: str) -> object:
    case = CASES[name][0]
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.bug)] \
        if case.bug else []
    if case.needs_root:
        marks.append(needs_root)
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_hostile_case(name: str, hostile_base: Base,
                      tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome = _outcome(name, hostile_base, tmp_path_factory)
    case = CASES[name][0]
    other = [p for p in outcome.problems if case.bug_shows not in p]
    if case.bug and other:
        raise DifferentFailure("a problem other than the known bug "
                               f"({case.bug_shows!r}):\n{outcome.report}")
    assert outcome.ok, outcome.report


def test_every_case_says_what_it_is() -> None:
    """Each case file names its family, explains itself (attack, what distill must do,
    why) and states one expectation."""
    assert len(CASES) >= 40
    for name, (case, doc) in CASES.items():
        assert name.split("_", 1)[0] in FAMILIES, name
        for word in ("Attack:", "Expect:", "Why:"):
            assert word in doc, f"{name}: the docstring has no {word!r}"
        assert case.attack and case.outcome, name
        if case.bug:
            assert case.bug.startswith("distill bug: ") and case.bug_shows, name
    families = {n.split("_", 1)[0] for n in CASES}
    assert families == set(FAMILIES), families


def test_the_canary_notices_an_escape(tmp_path: Path) -> None:
    """The canary check has teeth: a new file, a hardlink to the secret, a rewrite with
    the same bytes, a chmod to the same mode and an xattr are each seen."""
    from tests.hostile.harness import make_canary

    canary = make_canary(tmp_path / "canary")
    attacks: list[Callable[[], object]] = [lambda: (canary / "dir" / "pwned").write_bytes(b""),
               lambda: os.link(canary / "secret", tmp_path / "stolen"),
               lambda: (canary / "secret").write_bytes(SECRET),
               lambda: os.chmod(canary / "secret", 0o640),
               lambda: os.setxattr(canary / "dir", "user.x", b"1")]
    for attack in attacks:
        before = snapshot(canary)
        time.sleep(0.01)    # a ctime the change can move
        attack()
        assert snapshot(canary) != before, attack


def test_hostile_summary(hostile_base: Base, tmp_path_factory: pytest.TempPathFactory,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """Runs any case not yet run, prints one line, and checks that exactly the cases marked
    as known distill bugs fail."""
    # rootless, the cases whose own setup needs root are left out (and named)
    left_out = [n for n in CASES if ROOTLESS and CASES[n][0].needs_root]
    outcomes = [_outcome(n, hostile_base, tmp_path_factory) for n in CASES if n not in left_out]
    passed = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    seconds = sum(o.seconds for o in outcomes)
    lines = [(f"hostile corpus{' (rootless)' if ROOTLESS else ''}: {len(passed)} passed, "
              f"{len(failed)} failed ({len(outcomes)} cases, {seconds:.0f}s)")]
    if left_out:
        lines.append(f"  left out, their setup needs root: {', '.join(left_out)}")
    for o in failed:
        bug = CASES[o.name][0].bug
        lines.append(f"  failed: {o.name}" + (" (known distill bug)" if bug else ""))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    unexpected = [o.name for o in failed if not CASES[o.name][0].bug
                  or any(CASES[o.name][0].bug_shows not in p for p in o.problems)]
    fixed = [o.name for o in passed if CASES[o.name][0].bug]
    assert not unexpected, f"hostile cases that fail: {unexpected}"
    assert not fixed, f"marked as distill bugs but now pass (remove the mark): {fixed}"
