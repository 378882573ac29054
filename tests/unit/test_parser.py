"""distill.dockerfile.parser: BuildKit's parser rules and the Node view.

(While both existed, it was also checked against the PyPI ``dockerfile`` package it
replaced: the whole corpus and ~150,000 random cases agreed, apart from that package's
older BuildKit version and its binding's bugs.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.dockerfile.directives import DirectiveParser, detect_syntax
from distill.dockerfile.parser import (
    NOT_STRING_ARRAY,
    Heredoc,
    dump,
    parse_dockerfile,
    parse_json,
    split_command,
)
from distill.errors import DockerfileError

DATA = Path(__file__).resolve().parents[1] / "conformance" / "data"


def nodes(text: str) -> list[tuple[Any, ...]]:
    return [(n.cmd, n.flags, n.args, n.json) for n in parse_dockerfile(text).nodes]


def error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as e:
        parse_dockerfile(text)
    return e.value


# --- the AST and its dump ------------------------------------------------------------------


def test_dump_format() -> None:
    text = ('FROM Alpine AS b\nCOPY --from="a b" --chmod=0755 x y\nONBUILD RUN ["a"]\n'
            "FOO bar\nCMD []\nENV a=1 b=\"2 3\"\nLABEL k v w\nHEALTHCHECK NONE\n")
    assert dump(parse_dockerfile(text)) == (
        '(from "Alpine" "AS" "b")\n'
        '(copy ["--from=a b" "--chmod=0755"] "x" "y")\n'
        '(onbuild (run "a"))\n'
        '(foo "")\n'
        "(cmd)\n"
        '(env "a" "1" "=" "b" "\\"2 3\\"" "=")\n'
        '(label "k" "v w" "")\n'
        '(healthcheck "NONE")\n'
    )


def test_dump_quotes_like_go() -> None:
    result = parse_dockerfile('RUN ["\\u0000\\u00a0\\u00ad\\t", "é♥"]\n')
    assert dump(result) == '(run "\\x00\\u00a0\\u00ad\\t" "é♥")\n'


def test_instruction_lines_and_original() -> None:
    result = parse_dockerfile("\n# c\nRUN a \\\n  # inside\n\n  b\nFROM x")
    run, from_ = result.instructions
    assert (run.start_line, run.end_line, run.original) == (3, 6, "RUN a   b")
    assert (from_.start_line, from_.end_line) == (7, 7)
    assert result.warnings == ["Empty continuation line found in: RUN a   b"]
    assert result.warning_details[0].line == 6


def test_bare_continuation_is_an_empty_instruction() -> None:
    result = parse_dockerfile("FROM a\n\\\n")
    assert dump(result) == '(from "a")\n("")\n'
    assert result.nodes[1].cmd == "" and result.nodes[1].args == ("",)


def test_split_command() -> None:
    assert split_command("COPY --a='x y' -- --b c", "\\") == ("COPY", ["--a=x y"], "--b c")
    assert split_command("RUN --mount=a\\ b x", "\\") == ("RUN", ["--mount=a b"], "x")
    assert split_command("RUN\u00a0x", "\\") == ("RUN\u00a0x", [], "")


# --- the Node view (what the old adapter produced) -----------------------------------------


def test_nodes_are_shaped_like_the_dockerfile_package() -> None:
    result = parse_dockerfile(
        "FROM a\nENV a b c\nENV x=1 y=2\nONBUILD --f RUN --mount=x ls\nONBUILD ONBUILD x\n"
        'HEALTHCHECK --interval=1s CMD ["true"]\n', path="df")
    assert [(n.cmd, n.flags, n.args, n.json, n.sub_cmd) for n in result.nodes] == [
        ("from", (), ("a",), False, None),
        ("env", (), ("a", "b c"), False, None),
        ("env", (), ("x", "1", "y", "2"), False, None),
        ("onbuild", ("--f",), ("ls",), False, "RUN"),
        ("onbuild", (), ("",), False, "ONBUILD"),
        ("healthcheck", ("--interval=1s",), ("CMD", "true"), True, None),
    ]
    loc = result.nodes[1].location
    assert (loc.path, loc.start, loc.end, loc.text) == ("df", 2, 2, "ENV a b c")


def test_heredoc_nodes() -> None:
    text = "FROM a\nCOPY <<A 3<<-'B' /x\na\nA\n\tb\n\tB\r\nRUN x\n"
    result = parse_dockerfile(text)
    copy = result.nodes[1]
    assert copy.heredocs == (Heredoc("A", "a\n", 0),
                             Heredoc("B", "\tb\n", 3, expand=False, chomp=True))
    assert copy.original == "COPY <<A 3<<-'B' /x\na\nA\n\tb\nB\n"
    assert (copy.location.start, copy.location.end) == (2, 6)
    docs = result.instructions[1].heredocs
    assert [(d.expand, d.chomp) for d in docs] == [(True, False), (False, True)]
    assert result.nodes[2].location.start == 7


def test_onbuild_keeps_its_heredocs() -> None:
    node = parse_dockerfile("ONBUILD RUN <<EOF\nhi\nEOF\n").nodes[0]
    assert node.heredocs == (Heredoc("EOF", "hi\n"),)
    assert node.args == ("<<EOF",) and node.sub_cmd == "RUN"


def test_deep_onbuild_chains_and_huge_heredoc_fds() -> None:
    fd = "9" * 32
    result = parse_dockerfile("ONBUILD " * 8000 + f"RUN x\nRUN 0001<<A {fd}<<B\nA\nB\n")
    assert dump(result) == "(onbuild " * 8000 + '(run "x")' + ")" * 8000 + \
        f'\n(run "0001<<A {fd}<<B")\n'
    assert [d.file_descriptor for d in result.instructions[1].heredocs] == [1, 2**64 - 1]
    assert dump(parse_dockerfile("ONBUILD --a ONBUILD --b RUN --c x\nONBUILD\n")) == \
        '(onbuild ["--a"] (onbuild ["--b"] (run ["--c"] "x")))\n(onbuild)\n'


def test_heredocs_need_run_copy_or_add_in_shell_form() -> None:
    result = parse_dockerfile('USER <<A\nA\nRUN ["<<B"]\nB\nRUN << C\nC\n')
    assert [len(ins.heredocs) for ins in result.instructions] == [0, 0, 0, 0, 1]


# --- directives and escapes ----------------------------------------------------------------


def test_escape_directive() -> None:
    result = parse_dockerfile("\ufeff# escape=`\nFROM a\nRUN dir c:\\ `\n  && x\n")
    assert result.escape_token == "`" and result.directives == {"escape": "`"}
    assert result.nodes[1].args == ("dir c:\\   && x",)


def test_directives_end_at_the_first_other_line() -> None:
    result = parse_dockerfile("#!/bin/sh\n# escape=`\n# syntax=x/y:1 opt\nFROM a\n")
    assert result.escape_token == "\\"
    assert result.directives == {"syntax": "x/y:1 opt"}
    result = parse_dockerfile("# check=skip=all\n#ESCAPE = `\n\n# escape=\\\nFROM a")
    assert result.directives == {"check": "skip=all", "escape": "`"}


def test_directive_errors_name_the_line() -> None:
    e = error("# escape=x\nFROM a\n")
    assert e.message == "invalid escape token 'x' does not match ` or \\"
    assert e.location is not None and e.location.start == 1
    e = error("# syntax=a\n# check=b\n# syntax=c\nFROM a\n")
    assert e.message == "only one syntax parser directive can be used"
    assert e.location is not None and e.location.start == 3


def test_directive_parser_and_detect_syntax() -> None:
    parser = DirectiveParser()
    assert [d.name for d in parser.parse_all("# syntax=a\n# check=b\n# escape=`\n")] == [
        "syntax", "check", "escape"]
    found = detect_syntax('#!/bin/x\n{"syntax": "img"}')
    assert found is not None and (found.ref, found.line) == ("img", 1)
    assert detect_syntax('{"syntax": 1e999}') is None
    assert detect_syntax('{"syntax": 1}') is None


# --- exec form -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '["a"] x', '["a",]', "[NaN]", "[1e999]", '["a" "b"]', "['a']", "[" * 10001 + "]" * 10001,
])
def test_not_a_json_array_is_shell_form(text: str) -> None:
    assert nodes("CMD " + text) == [("cmd", (), (text,), False)]


@pytest.mark.parametrize("text", ['["a", 1]', '["a", ["b"]]', '[{"a": 1e308}]',
                                  "[" * 10000 + "]" * 10000])
def test_non_string_elements_are_an_error(text: str) -> None:
    e = error("FROM a\nRUN " + text)
    assert e.message == NOT_STRING_ARRAY
    assert e.location is not None and (e.location.start, e.location.end) == (2, 2)


def test_json_strings_decode_like_go() -> None:
    assert parse_json('["\\ud800x", "\\ud83d\\ude00", "\\u00e9"]') == ("\ufffdx", "😀", "é")
    assert nodes("CMD \u00a0[]") == [("cmd", (), (), True)]


# --- errors, limits, bytes that are not UTF-8 ---------------------------------------------


def test_parse_errors_are_located() -> None:
    e = error("FROM a\nENV \\\n  foo\n")
    assert e.message == "ENV must have two arguments"
    assert e.location is not None and (e.location.start, e.location.end) == (2, 3)
    assert e.location.text == "ENV \\\n  foo"
    e = error("FROM a\nRUN <<EOF\nbody\n")
    assert e.message == "unterminated heredoc"
    assert e.location is not None and (e.location.start, e.location.end) == (2, 2)
    e = error("# only a comment\n\n")
    assert e.message == "Dockerfile: file with no instructions" and e.location is None


@pytest.mark.parametrize(("line", "ok"), [
    ("a" * 65531 + "\n", True), ("a" * 65532 + "\n", False),  # 65536 bytes with the "\n"
    ("a" * 65531, True), ("a" * 65532, False),  # the last line, without "\n": 65535 at most
    ("é" * 32765 + "\n", True), ("é" * 32766 + "\n", False),  # bytes, not characters
])
def test_line_length_limit(line: str, ok: bool) -> None:
    text = "FROM a\nRUN " + line
    if ok:
        assert parse_dockerfile(text).instructions[1].end_line == 2
    else:
        e = error(text)
        assert e.message == "dockerfile line greater than max allowed size of 65535"
        assert e.location is not None and e.location.start == 2


def test_flags_and_healthcheck_walk_bytes_like_buildkit() -> None:
    result = parse_dockerfile("COPY --from=é a b\nHEALTHCHECK à\nCOPY --x\u0800 y\n")
    assert dump(result) == ('(copy ["--from=Ã©"] "a" "b")\n(healthcheck "\\xc3")\n'
                            '(copy ["--xà"] "\\x80" "y")\n')
    assert result.nodes[1].args == ("\ufffd",) and result.nodes[2].args == ("\ufffd", "y")


# --- never anything but DockerfileError ----------------------------------------------------

ALPHABET = st.sampled_from([
    "RUN ", "COPY ", "ADD ", "ENV ", "LABEL ", "ARG ", "CMD ", "HEALTHCHECK ", "ONBUILD ",
    "FROM ", "# escape=`\n", "# syntax=x\n", "\n", " ", "\t", "\r", "\\", "`", "'", '"', "[",
    "]", ",", "1", "=", "--", "-", "<<", "<<-", "EOF", "\nEOF\n", "$", "{", "}", "#", "a",
    "é", "\u00a0", "\u2028", "\x0b", "\x1c", "\x00", "\ufeff", "\udc80", "[\"a\"]", "3<<",
])


def _parse_or_error(text: str) -> None:
    try:
        result = parse_dockerfile(text)
    except DockerfileError:
        return
    assert dump(result).count("\n") == len(result.instructions) == len(result.nodes)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_dockerfile_error(text: str) -> None:
    _parse_or_error(text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=60).map("".join))
def test_grammar_soup_parses_or_raises_dockerfile_error(text: str) -> None:
    _parse_or_error(text)
