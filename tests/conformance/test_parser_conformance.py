"""BuildKit Dockerfile-parser conformance: parser/, parser-negative/, parser-extra/.

Data and runner rules: tests/conformance/data/README.md, sections 1 and 2. Files are read
as bytes and decoded as UTF-8 (they are byte-exact upstream copies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.dockerfile.directives import (
    DirectiveMatch,
    DirectiveParser,
    detect_syntax,
    parse_directive,
)
from distill.dockerfile.parser import (
    NOT_STRING_ARRAY,
    chomp_heredoc_content,
    dump,
    heredocs_from_line,
    parse_dockerfile,
    parse_heredoc,
    parse_json,
    parse_name_val,
    parse_words,
)
from distill.errors import DockerfileError

DATA = Path(__file__).resolve().parent / "data"
EXTRA = DATA / "parser-extra"


@dataclass(frozen=True)
class Vector:
    """One conformance check: an id and a callable that raises on failure."""

    id: str
    check: Callable[[], None]


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_read(EXTRA / name))
    return data


# --- parser/ and parser-negative/ ----------------------------------------------------------


def _golden(case: Path) -> Callable[[], None]:
    def check() -> None:
        assert dump(parse_dockerfile(_read(case / "Dockerfile"))) == _read(case / "result")
    return check


def _negative(case: Path) -> Callable[[], None]:
    def check() -> None:
        with pytest.raises(DockerfileError):
            parse_dockerfile(_read(case / "Dockerfile"))
    return check


def _corpus_vectors() -> Iterator[Vector]:
    for case in sorted((DATA / "parser").iterdir()):
        yield Vector(f"parser/{case.name}", _golden(case))
    for case in sorted((DATA / "parser-negative").iterdir()):
        yield Vector(f"parser-negative/{case.name}", _negative(case))


# --- parser_test.json ----------------------------------------------------------------------


def _parser_test_vectors() -> Iterator[Vector]:
    data = _load("parser_test.json")
    for i, case in enumerate(data["parse_words"]["cases"]):
        def words(case: dict[str, Any] = case) -> None:
            assert parse_words(case["input"], "\\") == case["expected"]
        yield Vector(f"parse_words[{i}]", words)

    spec = data["line_numbers"]

    def line_numbers() -> None:
        result = parse_dockerfile(_read(DATA / spec["dockerfile_path"]))
        assert (result.start_line, result.end_line) == (
            spec["root"]["start_line"], spec["root"]["end_line"])
        assert len(result.instructions) == spec["children_count"]
        for ins, node, want in zip(result.instructions, result.nodes, spec["children"]):
            assert (ins.start_line, ins.end_line) == (want["start_line"], want["end_line"])
            assert (node.location.start, node.location.end) == (ins.start_line, ins.end_line)
    yield Vector("line_numbers", line_numbers)

    spec_w = data["empty_continuation_warnings"]

    def warnings() -> None:
        result = parse_dockerfile(spec_w["dockerfile"])
        assert len(result.warnings) == spec_w["expected_warning_count"]
        for got, want in zip(result.warning_details, spec_w["expected_warnings"]):
            for text in want["short_contains"]:
                assert text in got.short
            if "detail_contains" in want:
                assert want["detail_contains"] in got.detail
        assert result.warnings == [w.short for w in result.warning_details]
    yield Vector("empty_continuation_warnings", warnings)

    spec_s = data["scanner_error"]

    def scanner_error() -> None:
        text = spec_s["dockerfile_template"].replace(
            "%s", spec_s["label_char"] * spec_s["label_repeat"])
        with pytest.raises(DockerfileError) as e:
            parse_dockerfile(text)
        assert e.value.message == spec_s["expected_error"]
    yield Vector("scanner_error", scanner_error)


# --- parser_heredoc_test.json --------------------------------------------------------------


def _heredoc_vectors() -> Iterator[Vector]:
    data = _load("parser_heredoc_test.json")
    spec = data["extract_heredocs"]
    for want in spec["expected"]:
        def extract(want: dict[str, Any] = want) -> None:
            ins = parse_dockerfile(spec["dockerfile"]).instructions[want["child_index"]]
            got = [{"name": h.name, "content": h.content, "expand": h.expand,
                    "chomp": h.chomp, "file_descriptor": h.file_descriptor}
                   for h in ins.heredocs]
            assert got == (want["heredocs"] or [])
        yield Vector(f"extract_heredocs[{want['child_index']}]", extract)

    spec_j = data["json_form_has_no_heredocs"]

    def json_form() -> None:
        result = parse_dockerfile(spec_j["dockerfile"])
        for index in spec_j["child_indexes_without_heredocs"]:
            assert result.instructions[index].heredocs == ()
            assert result.instructions[index].json
    yield Vector("json_form_has_no_heredocs", json_form)

    for i, case in enumerate(data["chomp_heredoc_content"]["cases"]):
        def chomp(case: dict[str, Any] = case) -> None:
            assert chomp_heredoc_content(case["input"]) == case["expected"]
        yield Vector(f"chomp_heredoc_content[{i}]", chomp)

    words = data["parse_heredoc_word"]
    for word in words["valid_name_EOF"]:
        def valid(word: str = word) -> None:
            doc = parse_heredoc(word)
            assert doc is not None and doc.name == "EOF"
        yield Vector(f"parse_heredoc_word[valid {word!r}]", valid)
    for word in words["invalid_error"]:
        def invalid(word: str = word) -> None:
            with pytest.raises(DockerfileError):
                parse_heredoc(word)
        yield Vector(f"parse_heredoc_word[invalid {word!r}]", invalid)
    for word in words["not_heredoc"]:
        def not_heredoc(word: str = word) -> None:
            assert parse_heredoc(word) is None
        yield Vector(f"parse_heredoc_word[not {word!r}]", not_heredoc)

    for i, case in enumerate(data["heredocs_from_line"]["cases"]):
        def from_line(case: dict[str, Any] = case) -> None:
            want = case.get("found_at_commit", case["heredoc_names"])
            assert [h.name for h in heredocs_from_line(case["line"])] == want
        yield Vector(f"heredocs_from_line[{i} {case['line']!r}]", from_line)


# --- directives_test.json ------------------------------------------------------------------


def _check_match(found: DirectiveMatch | None, case: dict[str, Any]) -> None:
    assert (found is not None) == case["ok"]
    fields = {"ref": "ref", "cmdline": "cmdline", "start_line": "line", "end_line": "line"}
    for key, attr in fields.items():
        if key in case:
            assert (getattr(found, attr) if found else ("" if key in ("ref", "cmdline") else 0)
                    ) == case[key], key


def _directive_input(case: dict[str, Any]) -> str:
    prefix = bytes.fromhex(str(case.get("input_bytes_hex_prefix", "")))
    return (prefix + str(case["input"]).encode("utf-8")).decode("utf-8")


def _directive_vectors() -> Iterator[Vector]:
    data = _load("directives_test.json")
    for i, case in enumerate(data["parse_all"]["cases"]):
        def parse_all(case: dict[str, Any] = case) -> None:
            found = DirectiveParser().parse_all(case["input"])
            assert [{"name": d.name, "value": d.value} for d in found] == case["expected"]
        yield Vector(f"directives.parse_all[{i}]", parse_all)
    for i, case in enumerate(data["detect_syntax"]["cases"]):
        def syntax(case: dict[str, Any] = case) -> None:
            _check_match(detect_syntax(_directive_input(case)), case)
        yield Vector(f"directives.detect_syntax[{i}]", syntax)
    for i, case in enumerate(data["parse_directive_check"]["cases"]):
        def check(case: dict[str, Any] = case) -> None:
            _check_match(parse_directive("check", _directive_input(case)), case)
        yield Vector(f"directives.parse_directive_check[{i}]", check)


# --- json_test.json, line_parsers_test.json ------------------------------------------------


def _json_and_line_parser_vectors() -> Iterator[Vector]:
    data = _load("json_test.json")
    for i, case in enumerate(data["valid"]):
        def valid(case: dict[str, Any] = case) -> None:
            assert list(parse_json(case["input"])) == case["expected"]
            node = parse_dockerfile("CMD " + case["input"]).nodes[0]
            assert node.json and list(node.args) == case["expected"]
        yield Vector(f"json.valid[{i}]", valid)
    for i, text in enumerate(data["invalid_not_string_array"]):
        def invalid(text: str = text) -> None:
            with pytest.raises(DockerfileError) as e:
                parse_json(text)
            assert e.value.message == NOT_STRING_ARRAY
            with pytest.raises(DockerfileError) as e:
                parse_dockerfile("FROM a\nRUN " + text)
            assert e.value.message == NOT_STRING_ARRAY
            assert e.value.location is not None and e.value.location.start == 2
        yield Vector(f"json.invalid_not_string_array[{i}]", invalid)

    for i, case in enumerate(_load("line_parsers_test.json")["cases"]):
        def name_val(case: dict[str, Any] = case) -> None:
            if "expected_error" in case:
                with pytest.raises(DockerfileError) as e:
                    parse_name_val(case["input"], case["key"])
                assert case["expected_error"] in e.value.message
            else:
                assert list(parse_name_val(case["input"], case["key"])) == \
                    case["expected_values"]
        yield Vector(f"line_parsers[{i}]", name_val)


def _vectors() -> list[Vector]:
    return [
        *_corpus_vectors(), *_parser_test_vectors(), *_heredoc_vectors(),
        *_directive_vectors(), *_json_and_line_parser_vectors(),
    ]


VECTORS = _vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_parser_conformance(vector: Vector) -> None:
    vector.check()


def test_parser_conformance_summary(capsys: pytest.CaptureFixture[str]) -> None:
    failed: list[str] = []
    for vector in VECTORS:
        try:
            vector.check()
        except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
            failed.append(f"{vector.id}: {type(e).__name__}: {e}")
    with capsys.disabled():
        print(f"\nparser conformance: {len(VECTORS) - len(failed)} passed, "
              f"{len(failed)} failed")
        for line in failed:
            print("  FAILED", line)
    assert not failed
    assert sum(v.id.startswith("parser/") for v in VECTORS) == 33
    assert sum(v.id.startswith("parser-negative/") for v in VECTORS) == 4
