"""distill.ignore beyond the upstream tables: the context walk (fsutil's rules), the
ignore-file lookup, RE2 semantics that leak through the translation, and robustness."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.errors import ContextError
from distill.ignore import (
    BAD_PATTERN,
    MatchInfo,
    PatternMatcher,
    load_context_ignore,
    read_ignore_file,
    walk_context,
)
from distill.ignore import files as ignore

TREE = [
    "Dockerfile",
    "a.txt",
    "a/x",
    "build/out.o",
    "build/keep/k.txt",
    "build/sub/deep/y.o",
    "docs/README.md",
    "docs/guide/intro.md",
    "docs/other.txt",
    "src/main.py",
    "src/main.pyc",
    "src/pkg/mod.py",
    "src/pkg/mod.pyc",
    "src/pkg/__pycache__/mod.cpython-311.pyc",
    "logs/today.log",
    "logs/nested/old.log",
]


def make_tree(root: Path, files: list[str] = TREE) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return root


def walk(root: Path, patterns: list[str] | None, start: str = "") -> list[str]:
    matcher = PatternMatcher(patterns) if patterns is not None else None
    return [rel for rel, _ in walk_context(root, matcher, start)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ctx")


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Directories the walk lists (to prove an ignored directory is not even read)."""
    seen: list[str] = []
    real = os.scandir

    def spy(path: str) -> os._ScandirIterator[str]:  # type: ignore[name-defined]
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(ignore.os, "scandir", spy)
    return seen


# --- walking the context ------------------------------------------------------------

def test_walk_without_matcher_lists_everything_depth_first_in_byte_order(tree: Path) -> None:
    got = walk(tree, None)
    # "a" < "a.txt" by name, and a directory's entries follow it at once
    assert got[:5] == ["Dockerfile", "a", "a/x", "a.txt", "build"]
    files = {rel for rel in got if (tree / rel).is_file()}
    assert files == set(TREE)
    dirs = [rel for rel in got if (tree / rel).is_dir()]
    for d in dirs:  # every entry comes after its parent
        for rel in got:
            if rel.startswith(d + "/"):
                assert got.index(rel) > got.index(d)
    assert walk(tree, []) == got  # no patterns: nothing ignored


def test_ignored_directory_is_skipped_without_being_read(tree: Path, scanned: list[str]) -> None:
    got = walk(tree, ["build", "logs/"])
    assert not [rel for rel in got if rel.startswith(("build", "logs"))]
    assert str(tree / "build") not in scanned
    assert str(tree / "logs") not in scanned
    assert "src/pkg/mod.py" in got


def test_reinclude_inside_ignored_directory_lists_the_directory_first(
    tree: Path, scanned: list[str]
) -> None:
    got = walk(tree, ["docs", "!docs/README.md"])
    docs = [rel for rel in got if rel.startswith("docs")]
    # the ignored directory is listed, just before the entry that needs it
    assert docs == ["docs", "docs/README.md"]
    # only "docs" had to be entered: "docs/guide" cannot hold docs/README.md
    assert str(tree / "docs") in scanned
    assert str(tree / "docs" / "guide") not in scanned


def test_ignored_directory_with_nothing_reincluded_is_not_listed(tree: Path) -> None:
    got = walk(tree, ["build", "!build/keep/missing.txt"])
    assert not [rel for rel in got if rel.startswith("build")]


def test_reincluded_directory_brings_its_whole_subtree(tree: Path) -> None:
    got = walk(tree, ["build", "!build/keep"])
    assert [rel for rel in got if rel.startswith("build")] == [
        "build", "build/keep", "build/keep/k.txt"]


def test_glob_exception_makes_the_walk_enter_every_ignored_directory(
    tree: Path, scanned: list[str]
) -> None:
    got = walk(tree, ["*", "!**/*.md"])
    assert got == ["docs", "docs/README.md", "docs/guide", "docs/guide/intro.md"]
    assert str(tree / "build" / "sub" / "deep") in scanned  # nothing could be pruned


def test_double_star_patterns(tree: Path) -> None:
    got = walk(tree, ["**/*.pyc", "**/__pycache__", "logs/**", "!logs/**/old.log"])
    assert "src/main.py" in got and "src/pkg/mod.py" in got
    assert not [rel for rel in got if rel.endswith(".pyc") or "__pycache__" in rel]
    # "logs/**" matches what is below logs, not logs itself
    assert [rel for rel in got if rel.startswith("logs")] == [
        "logs", "logs/nested", "logs/nested/old.log"]


def test_everything_but_one_directory(tree: Path) -> None:
    got = walk(tree, ["**", "!src/pkg"])
    assert got == ["src", "src/pkg", "src/pkg/__pycache__",
                   "src/pkg/__pycache__/mod.cpython-311.pyc", "src/pkg/mod.py",
                   "src/pkg/mod.pyc"]


def test_deprecated_bool_parent_result_differs_from_the_walk() -> None:
    # docker/buildx#850: with only a bool, a re-included directory's children stay ignored
    pm = PatternMatcher(["**", "!util/docker/web"])
    parent = pm.matches_using_parent_results("util/docker/web", True)
    assert parent is False
    assert pm.matches_using_parent_results("util/docker/web/foo", parent) is True
    _, info = pm.match_with_parent_info("util", MatchInfo())
    _, info = pm.match_with_parent_info("util/docker", info)
    _, info = pm.match_with_parent_info("util/docker/web", info)
    assert pm.matches_using_parent_results("util/docker/web/foo", info) is False
    assert pm.matches_or_parent_matches("util/docker/web/foo") is False


def test_start_restricts_the_walk_to_a_subtree(tree: Path) -> None:
    assert walk(tree, None, "src/pkg") == [
        "src/pkg", "src/pkg/__pycache__", "src/pkg/__pycache__/mod.cpython-311.pyc",
        "src/pkg/mod.py", "src/pkg/mod.pyc"]
    assert walk(tree, ["**/*.pyc"], "/src/pkg/") == [
        "src/pkg", "src/pkg/__pycache__", "src/pkg/mod.py"]
    assert walk(tree, None, "src/main.py") == ["src/main.py"]
    assert walk(tree, ["src"], "src/pkg") == []  # start is ignored: nothing there
    assert walk(tree, None, "nope") == []
    with pytest.raises(ContextError):
        walk(tree / "nope", None)
    # an ignored start that holds re-included entries is listed, its ancestors are not
    assert walk(tree, ["docs", "!docs/README.md"], "docs") == ["docs", "docs/README.md"]
    assert walk(tree, ["**", "!src/pkg/mod.py"], "src") == ["src", "src/pkg", "src/pkg/mod.py"]


def test_walk_does_not_follow_symlinks(tree: Path) -> None:
    (tree / "link").symlink_to("src", target_is_directory=True)
    entries = dict(walk_context(tree, None))
    assert "link" in entries and not [rel for rel in entries if rel.startswith("link/")]
    assert os.path.islink(tree / "link") and entries["link"].st_mode & 0o170000 == 0o120000


def test_walk_yields_lstat_results(tree: Path) -> None:
    entries = dict(walk_context(tree, PatternMatcher(["build", "logs"])))
    assert entries["a.txt"].st_size == len("a.txt")
    assert entries["src"].st_ino == os.lstat(tree / "src").st_ino


# --- which ignore file --------------------------------------------------------------

def test_dockerfile_specific_ignore_file_wins(tree: Path) -> None:
    (tree / ".dockerignore").write_text("src\n")
    (tree / "Dockerfile.dockerignore").write_text("docs\n")
    matcher = load_context_ignore(tree, tree / "Dockerfile")
    assert matcher is not None and matcher.patterns == ["docs"]


def test_dockerfile_specific_ignore_file_next_to_a_dockerfile_elsewhere(
    tree: Path, tmp_path: Path
) -> None:
    (tree / ".dockerignore").write_text("src\n")
    other = tmp_path / "files" / "build.Dockerfile"
    other.parent.mkdir()
    other.write_text("FROM scratch\n")
    (other.parent / "build.Dockerfile.dockerignore").write_text("/logs/\n!logs/x\n")
    matcher = load_context_ignore(tree, other)
    assert matcher is not None and matcher.patterns == ["logs", "!logs/x"]
    # no specific file: the context's own
    plain = load_context_ignore(tree, tree / "Dockerfile")
    assert plain is not None and plain.patterns == ["src"]


def test_empty_specific_ignore_file_still_overrides(tree: Path) -> None:
    (tree / ".dockerignore").write_text("*\n")
    (tree / "Dockerfile.dockerignore").write_text("")
    matcher = load_context_ignore(tree, tree / "Dockerfile")
    assert matcher is not None and matcher.patterns == []
    assert "src/main.py" in [rel for rel, _ in walk_context(tree, matcher)]


def test_no_ignore_file(tree: Path) -> None:
    assert load_context_ignore(tree, tree / "Dockerfile") is None
    assert load_context_ignore(tree, None) is None
    (tree / ".dockerignore").mkdir()  # not a file: as if absent
    assert load_context_ignore(tree, None) is None


def test_bad_pattern_in_ignore_file_names_the_file(tree: Path) -> None:
    (tree / ".dockerignore").write_text("ok\n[\n")
    with pytest.raises(ContextError) as info:
        load_context_ignore(tree, None)
    assert info.value.message == BAD_PATTERN
    assert ".dockerignore" in (info.value.hint or "")


def test_ignore_file_bytes_are_read_as_go_does(tree: Path) -> None:
    (tree / ".dockerignore").write_bytes(b"\xef\xbb\xbf# bom, then a comment\r\n"
                                         b"  # not a comment\r\n\xff*\n")
    matcher = load_context_ignore(tree, None)
    assert matcher is not None
    assert matcher.patterns == ["# not a comment", "\udcff*"]


# --- reading ignore files -----------------------------------------------------------

def test_read_ignore_file_rules() -> None:
    text = "\ufeff#c\n  # kept\n\t/a/../b/ \r\n!  /c//d\n!\n/\n\x1c\n \u3000\n"
    # '#' only counts as first character; U+001C is not Go whitespace, U+3000 is
    assert read_ignore_file(text) == ["# kept", "b", "!c/d", "!", "/", "\x1c"]
    assert read_ignore_file("") == [] and read_ignore_file(None) == []


def test_read_ignore_file_line_limit() -> None:
    assert read_ignore_file("a" * 65535) == ["a" * 65535]
    with pytest.raises(ContextError):
        read_ignore_file("x\n" + "a" * 65536 + "\n")
    with pytest.raises(ContextError):
        read_ignore_file("a" * 65535 + "\r\n")  # the '\r' counts


# --- semantics that come from Go's regexp, reproduced on purpose ----------------------

@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("a|b*", "a", True),          # '|' is not escaped upstream: an alternation, "^a"
        ("a|b*", "a/x", True),        # or "b[^/]*$", neither anchored at both ends
        ("a|b*", "zbz", True),
        ("a|b*", "zzz", False),
        ("x{2}*", "xx", True),         # braces reach the regexp: counted repetition
        ("x{2}*", "x{2}", False),
        ("x{2}", "x{2}", True),        # ... but only when the pattern is a regexp at all
        ("\\d*", "7z", True),          # '\d' is RE2's digit class, not an escaped 'd'
        ("\\d*", "dz", False),
        ("^a*", "abc", True),          # '^' anchors
        ("^a*", "^abc", False),
        ("[[:digit:]]*", "1", True),   # POSIX classes
        ("a?c", "a\nc", True),         # '?' and '*' match a newline ...
        ("**/x?", "d\ne/xy", False),   # ... '**' (regexp '.*') does not
        ("**/x", "d\ne/x", True),      # a suffix test, not a regexp
        ("*.txt", "a/b.txt", False),
        ("a**b", "ab", True),          # '**' not followed by '/' still means "(.*/)?"
        ("a**b", "axb", False),
    ],
)
def test_go_regexp_semantics(pattern: str, path: str, expected: bool) -> None:
    assert PatternMatcher([pattern]).matches_or_parent_matches(path) is expected


def test_pattern_that_go_regexp_rejects_fails_only_when_used() -> None:
    pm = PatternMatcher(["**", "[z-a]x"])  # valid glob, inverted range in the regexp
    assert pm.matches_or_parent_matches("f") is True  # never evaluated: '**' matched first
    pm = PatternMatcher(["[z-a]x"])
    for _ in range(2):
        with pytest.raises(ContextError) as info:
            pm.matches_or_parent_matches("f")
        assert info.value.message == BAD_PATTERN


def test_unicode_script_class_is_refused_explicitly() -> None:
    # valid for Docker (Go knows the Greek script); Python has no script data
    pm = PatternMatcher(["\\p{Greek}*"])
    with pytest.raises(ContextError, match="unsupported .dockerignore pattern"):
        pm.matches_or_parent_matches("α")
    assert PatternMatcher(["\\p{L}*"]).matches_or_parent_matches("α") is True  # categories work
    with pytest.raises(ContextError) as info:
        PatternMatcher(["\\p{Nope}*"]).matches_or_parent_matches("α")
    assert info.value.message == BAD_PATTERN


def test_lone_exclamation_mark() -> None:
    with pytest.raises(ContextError) as info:
        PatternMatcher(["a", " ! "])
    assert info.value.message == 'illegal exclusion pattern: "!"'


@pytest.mark.parametrize(
    "pattern",
    ["a*a*a*a*a*a*a*a*a*a*a*a*b", "**/**/**/**/**/**/**/x", "*a????????????????????",
     "[ab]*a[ab]{20}*", "(x*)*y*"],
)
def test_matching_is_linear(pattern: str) -> None:
    pm = PatternMatcher([pattern])
    text = ("a" * 3000 + "/") * 3 + "a" * 20000
    started = time.perf_counter()
    for _ in range(3):
        pm.match_with_parent_info(text, MatchInfo((False,)))
    assert time.perf_counter() - started < 2.0


# --- robustness -----------------------------------------------------------------------

PATTERN_ALPHABET = st.sampled_from(
    list("ab/*?[]\\!^-.{}|$()0,:dwpQE x") + ["**", "[:alpha:]", "\\Q", "{2}", "é"]
)
PATH_ALPHABET = st.sampled_from(list("ab/x.-_é*[]{}|\n") + ["\udcff"])


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(st.lists(PATTERN_ALPHABET, max_size=8).map("".join), max_size=3),
    paths=st.lists(st.lists(PATH_ALPHABET, max_size=12).map("".join), min_size=1, max_size=4),
)
def test_random_patterns_compile_or_raise_context_error(
    patterns: list[str], paths: list[str]
) -> None:
    try:
        pm = PatternMatcher(patterns)
    except ContextError:
        return
    for path in paths:
        for call in (pm.matches_or_parent_matches, pm.matches,
                     lambda p: pm.match_with_parent_info(p, None)[0]):
            try:
                assert call(path) in (True, False)
            except ContextError as e:
                assert e.message == BAD_PATTERN
