"""Unit tests for distill.dockerfile.shell (the conformance vectors live elsewhere)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.dockerfile.shell import Lexer, env_list_to_dict
from distill.errors import ShellExpansionError

ENV = {"A": "a b", "EMPTY": "", "PATH": "/usr/bin:/bin", "FILE": "archive.tar.gz"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A-${A}", "a b-a b"),
        ("${MISSING:-x}${EMPTY:-y}${EMPTY-z}", "xy"),
        ("${FILE%.*}|${FILE%%.*}|${FILE#*.}|${FILE##*.}", "archive.tar|archive|tar.gz|gz"),
        ("${PATH//:/ }", "/usr/bin /bin"),
        ("${PATH/\\//X}", "Xusr/bin:/bin"),
        ("'$A'\"$A\"", "$Aa b"),
        ('"a\\b\\$\\"\\\\"', 'a\\b$"\\'),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert Lexer().process_word(word, ENV) == expected


def test_backtick_escape() -> None:
    lex = Lexer("`")
    assert lex.process_word("C:\\dir`$A", ENV) == "C:\\dir$A"
    assert lex.process_word('"`"x`y"', ENV) == '"x`y'


def test_process_words_splits_unquoted_expansions_only() -> None:
    lex = Lexer()
    assert lex.process_words('x$A "$A" y\\ z', ENV) == ["xa", "b", "a b", "y z"]
    assert lex.process_words("  ", ENV) == []


def test_process_words_nested_word_drops_earlier_text_like_buildkit() -> None:
    # BuildKit shares one field buffer across nesting levels; we copy that.
    assert Lexer().process_words("hello${X:-a}bye c", {}) == ["abye", "c"]


def test_matches() -> None:
    result, matched, unmatched = Lexer().process_word_with_matches("$A${EMPTY}${NOPE:-$B}", ENV)
    assert result == "a b"
    assert matched == {"A", "EMPTY"}
    assert unmatched == {"NOPE", "B"}


def test_replace_all_expands_go_template_but_single_replace_does_not() -> None:
    env = {"V": "ab", "R": "<$0>"}
    assert Lexer().process_word("${V//?/$R}", env) == "<a><b>"
    assert Lexer().process_word("${V/?/$R}", env) == "<$0>b"


def test_flags() -> None:
    lex = Lexer(raw_quotes=True, skip_unset_env=True)
    assert lex.process_word("'$A' \"$X\" ${Y:-z} $A", ENV) == "'$A' \"$X\" ${Y:-z} a b"


@pytest.mark.parametrize(
    "word",
    ["${A", "${}", "${A:=x}", "${A:#x}", "${A#\\x}", "'x", '"x', "${NOPE?gone}", "${EMPTY:?}"],
)
def test_errors(word: str) -> None:
    with pytest.raises(ShellExpansionError):
        Lexer().process_word(word, ENV)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    word = "${A:-" * 5000 + "}" * 5000
    with pytest.raises(ShellExpansionError):
        Lexer().process_word(word, ENV)


def test_patterns_do_not_backtrack_exponentially() -> None:
    start = time.monotonic()
    pattern = "*a" * 40 + "b"
    assert Lexer().process_word("${V#" + pattern + "}", {"V": "a" * 400}) == "a" * 400
    assert time.monotonic() - start < 5


def test_env_list_to_dict() -> None:
    assert env_list_to_dict(["a=1=2", "b", "a=3", "c="]) == {"a": "3", "b": "", "c": ""}


@settings(max_examples=500, deadline=None)
@given(word=st.text(), escape=st.sampled_from(["\\", "`"]))
def test_arbitrary_text_returns_or_raises_shell_error(word: str, escape: str) -> None:
    lex = Lexer(escape)
    for call in (lex.process_word, lex.process_words):
        try:
            call(word, ENV)
        except ShellExpansionError:
            pass


@settings(max_examples=500, deadline=None)
@given(
    word=st.text(alphabet=st.sampled_from(list("${}:-+?#%/\\'\"*ab \n")), max_size=40),
    value=st.text(alphabet=st.sampled_from(list("ab*?\\$0{} \n")), max_size=12),
)
def test_expansion_syntax_heavy_text(word: str, value: str) -> None:
    lex = Lexer()
    env = {"a": value, "b": ""}
    for call in (lex.process_word, lex.process_words):
        try:
            call(word, env)
        except ShellExpansionError:
            pass
