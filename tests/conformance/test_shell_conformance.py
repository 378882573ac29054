"""BuildKit shell-lexer conformance: shell/envVarTest, shell/wordsTest, shell/lex_test.json.

The data lives in the shared conformance folder (see its README, section 3); set
DISTILL_CONFORMANCE to point somewhere else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.dockerfile.shell import Lexer, env_list_to_dict
from distill.errors import ShellExpansionError


def _conformance_dir() -> Path:
    override = os.environ.get("DISTILL_CONFORMANCE")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data"


SHELL_DIR = _conformance_dir() / "shell"

ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


@dataclass(frozen=True)
class Vector:
    """One conformance check: an id and a callable that raises AssertionError on failure."""

    id: str
    check: Callable[[], None]


def _lines(path: Path) -> list[str]:
    """Split like Go's bufio.Scanner: at \\n, dropping one trailing \\r."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _expect_word(word: str, env: dict[str, str], expected: str) -> None:
    lex = Lexer("\\")
    if expected == "error":
        with pytest.raises(ShellExpansionError):
            lex.process_word(word, env)
    else:
        assert lex.process_word(word, env) == expected


def _env_var_vectors() -> Iterator[Vector]:
    for lineno, raw in enumerate(_lines(SHELL_DIR / "envVarTest"), 1):
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("|")]
        assert len(fields) == 3, f"envVarTest:{lineno}: bad line {raw!r}"
        platform, word, expected = fields
        if platform == "W":
            continue
        assert platform in ("A", "U"), f"envVarTest:{lineno}: bad platform {platform!r}"
        yield Vector(
            f"envVarTest:{lineno}:{word}",
            lambda w=word, e=expected: _expect_word(w, ENV_VAR_TEST_ENV, e),
        )


def _expect_words(word: str, env: dict[str, str], expected: list[str]) -> None:
    lex = Lexer("\\")
    try:
        got = lex.process_words(word, env)
    except ShellExpansionError:
        got = ["error"]
    assert got == expected


def _words_vectors() -> Iterator[Vector]:
    env: dict[str, str] = {}
    for lineno, raw in enumerate(_lines(SHELL_DIR / "wordsTest"), 1):
        if raw.startswith("#"):
            continue
        if raw.startswith("ENV "):
            name, _, value = raw[3:].lstrip(" ").partition("=")
            env[name] = value
            continue
        parts = raw.split("|")
        assert len(parts) == 2, f"wordsTest:{lineno}: bad line {raw!r}"
        word = parts[0].strip()
        expected = parts[1].lstrip(" ").split(",")
        yield Vector(
            f"wordsTest:{lineno}:{word}",
            lambda w=word, env=dict(env), e=expected: _expect_words(w, env, e),
        )


def _check_matches(case: dict[str, Any]) -> None:
    lex = Lexer("\\")
    if not case["guaranteed"]:
        try:
            lex.process_word_with_matches(case["input"], case["envs"])
        except ShellExpansionError:
            pass
        return
    if case.get("expect_error"):
        with pytest.raises(ShellExpansionError):
            lex.process_word_with_matches(case["input"], case["envs"])
        return
    result, matched, unmatched = lex.process_word_with_matches(case["input"], case["envs"])
    assert result == case["expected"]
    assert matched == set(case["matched"])
    assert unmatched == set(case["unmatched"])


def _check_platform(word: str, case: dict[str, Any]) -> None:
    result, _, _ = Lexer("\\").process_word_with_matches(word, case["envs"])
    assert result == case["expected"]


def _check_mandatory(case: dict[str, Any]) -> None:
    env = env_list_to_dict(case["env_list"])
    lex = Lexer("\\")
    if "error_contains" in case:
        with pytest.raises(ShellExpansionError) as info:
            lex.process_word(case["input"], env)
        assert case["error_contains"] in str(info.value)
    else:
        assert lex.process_word(case["input"], env) == case["expected"]


def _check_env_list(case: dict[str, Any]) -> None:
    assert env_list_to_dict(case["env_list"]).get(case["name"], "") == case["expected"]


def _lex_json_vectors() -> Iterator[Vector]:
    data = json.loads((SHELL_DIR / "lex_test.json").read_text(encoding="utf-8"))
    for i, case in enumerate(data["process_word_with_matches"]["cases"]):
        yield Vector(f"matches:{i}:{case['input']}", lambda c=case: _check_matches(c))
    platform = data["platform_filename_example"]
    for i, case in enumerate(platform["cases"]):
        yield Vector(f"platform:{i}", lambda c=case: _check_platform(platform["input"], c))
    for i, case in enumerate(data["mandatory_env_vars"]["cases"]):
        yield Vector(f"mandatory:{i}:{case['input']}", lambda c=case: _check_mandatory(c))
    for i, case in enumerate(data["env_list_lookup"]["cases"]):
        yield Vector(f"env_list:{i}:{case['name']}", lambda c=case: _check_env_list(c))


def all_vectors() -> list[Vector]:
    return [*_env_var_vectors(), *_words_vectors(), *_lex_json_vectors()]


VECTORS = all_vectors()


def test_vector_counts() -> None:
    ids = [v.id for v in VECTORS]
    assert sum(i.startswith("envVarTest:") for i in ids) == 228
    assert sum(i.startswith("wordsTest:") for i in ids) == 24
    assert sum(i.startswith("matches:") for i in ids) == 47
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_shell_vector(vector: Vector) -> None:
    vector.check()


def test_shell_conformance_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert VECTORS, f"no conformance data at {SHELL_DIR}"
    failed: list[str] = []
    for vector in VECTORS:
        try:
            vector.check()
        except (Exception, pytest.fail.Exception):  # noqa: BLE001 - any failure counts
            failed.append(vector.id)
    with capsys.disabled():
        print(f"\nshell conformance: {len(VECTORS) - len(failed)} passed, {len(failed)} failed")
    assert not failed, failed
