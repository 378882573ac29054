"""Heredocs in RUN/COPY, ``# syntax=``, and COPY --exclude/--parents/--link at the
instruction level, with BuildKit's instruction tests (``copy_heredoc``, ``run_heredoc``)
as the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.builder.copystep import split_pivot
from distill.builder.sources import Source
from distill.builder.steps import heredoc_command
from distill.dockerfile.instructions import Copy, Run
from distill.dockerfile.parser import parse
from distill.dockerfile.typed import to_instruction
from distill.errors import DockerfileError

DATA = Path(__file__).resolve().parents[1] / "conformance/data/instructions/instructions_test.json"
CASES = json.loads(DATA.read_text())


def _first(text: str):
    return to_instruction(parse(text)[0])


@pytest.mark.parametrize("case", CASES["copy_heredoc"]["cases"], ids=lambda c: c["dockerfile"])
def test_copy_heredoc_cases(case: dict) -> None:
    inst = _first(case["dockerfile"])
    assert isinstance(inst, Copy)
    got = {"dest_path": inst.dest, "source_paths": list(inst.sources),
           "source_contents": [{"path": d.name, "data": d.content, "expand": d.expand}
                               for d in inst.contents]}
    assert got == case["expected"]


@pytest.mark.parametrize("case", CASES["run_heredoc"]["cases"], ids=lambda c: c["dockerfile"])
def test_run_heredoc_cases(case: dict) -> None:
    inst = _first(case["dockerfile"])
    assert isinstance(inst, Run)
    assert (not inst.json) == case["prepend_shell"]
    assert list(inst.command) == case["cmd_line"]
    assert [{"name": d.name, "data": d.content, "chomp": d.chomp}
            for d in inst.heredocs] == case["files"]


def test_heredoc_destination_error() -> None:
    case = next(c for c in CASES["error_contains"]["cases"]
                if c["name"] == "COPY heredoc destination")
    with pytest.raises(DockerfileError) as err:
        _first(case["dockerfile"])
    assert case["error_contains"] in err.value.message
    assert err.value.location is not None and err.value.location.start == 1


def test_node_heredocs_carry_expand_and_chomp() -> None:
    node = parse("COPY <<-'A' <<B /d/\n\ta\nA\nb\nB\n")[0]
    assert [(d.name, d.expand, d.chomp) for d in node.heredocs] == [("A", False, True),
                                                                    ("B", True, False)]


def test_run_command_forms() -> None:
    # only the heredoc, no shebang: the body is the shell's script (tabs chomped for <<-)
    assert heredoc_command(_first("RUN <<-EOF\n\techo a\nEOF")) == (["echo a\n"], None)
    # a shebang: run as a file; the body keeps its tabs unless <<- is used
    cmd, script = heredoc_command(_first("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF"))
    assert cmd == ["/run/distill-pipes/EOF"]
    assert script == ("EOF", "#!/usr/bin/env python3\nprint(1)\n")
    # anything else: the heredocs go back after the line, for the shell
    cmd, script = heredoc_command(_first("RUN cat <<A <<-B >f\na\nA\n\tb\n\tB\n"))
    # (as BuildKit: body as written, then the bare delimiter)
    assert cmd == ["cat <<A <<-B >f\na\nA\n\tb\nB"] and script is None
    assert heredoc_command(_first("RUN <<'EOF' | python\nprint(1)\nEOF")) == (
        ["<<'EOF' | python\nprint(1)\nEOF"], None)
    assert heredoc_command(_first('RUN ["echo", "<<EOF"]')) == (["echo", "<<EOF"], None)


def test_onbuild_keeps_heredocs() -> None:
    onbuild = _first("ONBUILD RUN <<EOF\necho hi\nEOF")
    assert onbuild.expression == "RUN <<EOF\necho hi\nEOF"


@pytest.mark.parametrize("ref", [
    "docker/dockerfile:1", "docker/dockerfile:1.7", "docker/dockerfile:1.7.1",
    "docker/dockerfile:1-labs", "docker/dockerfile:1.7-labs", "docker/dockerfile",
    "docker.io/docker/dockerfile:1", "docker.io/docker/dockerfile:1.4.3",
    "docker/dockerfile:1@sha256:" + "a" * 64,
])
def test_builtin_syntax_is_accepted(ref: str) -> None:
    assert parse(f"# syntax={ref}\n# check=skip=all;error=true\nFROM x\n")[0].cmd == "from"


@pytest.mark.parametrize("ref", [
    "example.com/frontend:1", "docker/dockerfile:2", "docker/dockerfile-upstream:master",
    "tonistiigi/dockerfile:runmount", "docker/dockerfile:latest",
])
def test_other_frontends_are_refused(ref: str) -> None:
    with pytest.raises(DockerfileError) as err:
        parse(f"#!/usr/bin/env distill\n# syntax={ref}\nFROM x\n", "df")
    assert err.value.message == f"distill does not run external frontends: {ref}"
    loc = err.value.location
    assert loc is not None and (loc.path, loc.start) == ("df", 2)


def test_copy_flags() -> None:
    inst = _first("COPY --link --parents --exclude=*.md --exclude=tmp/ --from=b a ./x/./y /d/")
    assert isinstance(inst, Copy)
    assert (inst.link, inst.parents, inst.excludes, inst.from_) == (
        True, True, ("*.md", "tmp/"), "b")
    assert inst.sources == ("a", "./x/./y")
    plain = _first("COPY --link=false --parents=TRUE a /d")
    assert (plain.link, plain.parents, plain.excludes) == (False, True, ())


@pytest.mark.parametrize("flags,message", [
    ("--link=maybe", "expecting boolean value for flag link, not: maybe"),
    ("--parents=", "missing a value on flag: --parents="),
    ("--exclude", "missing a value on flag: --exclude"),
    ("--link --link", "duplicate flag specified: --link"),
])
def test_copy_flag_errors(flags: str, message: str) -> None:
    with pytest.raises(DockerfileError) as err:
        _first(f"COPY {flags} a /d")
    assert err.value.message == message


def test_pivot_and_paths_from_base() -> None:
    assert split_pivot("src/./b/c") == ("src", "src/./b/c")
    assert split_pivot("./src/./b") == ("src", "./src/./b")
    assert split_pivot("src/b") == (".", "src/b")
    src = Source("src/b/c", Path("/ctx/src/b/c"), "src")
    assert src.path_from_base() == "b/c"
    assert src.path_from_base(Path("/ctx/src/b/c/d/e")) == "b/c/d/e"
    assert Source("app", Path("/ctx/app")).path_from_base(Path("/ctx/app/x")) == "x"
