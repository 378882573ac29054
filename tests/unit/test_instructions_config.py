"""SHELL, STOPSIGNAL, VOLUME, MAINTAINER, HEALTHCHECK and ONBUILD: parsing and validation as
BuildKit's ``instructions`` package does it (parse.go), with its error texts.

Vectors come from ``tests/conformance/data/instructions/instructions_test.json`` (transcribed
from BuildKit's parse_test.go) where they concern these instructions, and from Go itself for
the value syntax BuildKit borrows (``time.ParseDuration``, ``Duration.String``,
``strconv.ParseInt``): those tables were printed by a throwaway Go 1.19 program.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.builder.configsteps import check_signal
from distill.dockerfile import instructions as ins
from distill.dockerfile import typed
from distill.dockerfile.flags import (
    format_go_duration,
    go_quote,
    parse_go_duration,
    parse_go_int32,
)
from distill.dockerfile.parser import Heredoc, Node, parse
from distill.errors import DistillError, DockerfileError, SourceLocation
from distill.oci.config import ImageConfig, RuntimeConfig

DATA = Path(__file__).resolve().parents[1] / "conformance" / "data" / "instructions"
VECTORS: dict[str, Any] = json.loads((DATA / "instructions_test.json").read_text("utf-8"))

# Instructions this file is about; other error vectors belong to other tests.
OURS = {"SHELL", "STOPSIGNAL", "VOLUME", "MAINTAINER", "HEALTHCHECK", "ONBUILD"}


def one(text: str) -> ins.Instruction:
    """The first instruction of ``text``, converted (BuildKit's ParseInstruction)."""
    return typed.to_instruction(parse(text, "Dockerfile")[0])


def error_of(text: str) -> str:
    with pytest.raises(DistillError) as e:
        one(text)
    return e.value.message


def stage(text: str) -> tuple[ins.Instruction, ...]:
    return typed.build_dockerfile(parse("FROM busybox\n" + text, "Dockerfile")).stages[0].instructions


# -- the conformance vectors -------------------------------------------------------------

def _keyword(text: str) -> str:
    return text.split()[0].upper()


EXACT = [c for c in VECTORS["error_exact"]["cases"] if _keyword(c["dockerfile"]) in OURS]
CONTAINS = [c for c in VECTORS["error_contains"]["cases"] if _keyword(c["dockerfile"]) in OURS]


def test_the_vectors_cover_every_instruction() -> None:
    assert {_keyword(c["dockerfile"]) for c in EXACT} == OURS - {"SHELL"}
    assert len(EXACT) == 5 and len(CONTAINS) == 3


@pytest.mark.parametrize("case", EXACT, ids=[c["dockerfile"] for c in EXACT])
def test_error_exact(case: dict[str, str]) -> None:
    assert error_of(case["dockerfile"]) == case["error"]


@pytest.mark.parametrize("case", CONTAINS, ids=[c["name"] for c in CONTAINS])
def test_error_contains(case: dict[str, str]) -> None:
    assert case["error_contains"] in error_of(case["dockerfile"])


def test_unknown_instruction_is_named_as_written() -> None:
    for case in VECTORS["error_contains"]["cases"]:
        if case["name"] == "Invalid instruction":
            assert case["error_contains"] in error_of(case["dockerfile"])


def test_healthcheck_from_ast() -> None:
    case = VECTORS["healthcheck_from_ast"]
    inst = one("HEALTHCHECK " + " ".join(case["arg_values"]))
    assert isinstance(inst, ins.Healthcheck)
    assert list(inst.test) == case["expected_test"]


@pytest.mark.parametrize("case", VECTORS["healthcheck_interval_option"]["cases"],
                         ids=lambda c: c["value"])
def test_healthcheck_interval_option(case: dict[str, Any]) -> None:
    text = f"HEALTHCHECK --interval={case['value']} CMD true"
    if case.get("ok"):
        inst = one(text)
        assert isinstance(inst, ins.Healthcheck)
        assert inst.interval == parse_go_duration(case["value"])
    else:
        assert case["error_contains"] in error_of(text)


@pytest.mark.parametrize("case", VECTORS["handle_json_args"]["cases"], ids=str)
def test_handle_json_args(case: dict[str, Any]) -> None:
    loc = SourceLocation("Dockerfile", 1, 1)
    node = Node("cmd", (), tuple(case["args"]), case["json"], "", loc)
    assert list(typed._json_args(node)) == case["expected"]


# -- Go's value syntax ---------------------------------------------------------------------

# time.ParseDuration(input) -> nanoseconds and Duration.String(), or the error (Go 1.19).
DURATIONS: list[tuple[str, int | str, str]] = [
    ("", "time: invalid duration \"\"", ""),
    ("0", 0, "0s"), ("-0", 0, "0s"), ("+0", 0, "0s"), ("0s", 0, "0s"), ("0ms", 0, "0s"),
    ("1ms", 1_000_000, "1ms"), ("50ns", 50, "50ns"), ("999us", 999_000, "999µs"),
    ("999µs", 999_000, "999µs"), ("999μs", 999_000, "999µs"),
    ("1.5s", 1_500_000_000, "1.5s"), ("1h30m", 5_400_000_000_000, "1h30m0s"),
    ("1h30m0.5s", 5_400_500_000_000, "1h30m0.5s"), (".5s", 500_000_000, "500ms"),
    ("5.s", 5_000_000_000, "5s"),
    (".s", "time: invalid duration \".s\"", ""), ("-.s", "time: invalid duration \"-.s\"", ""),
    ("1", "time: missing unit in duration \"1\"", ""),
    ("10", "time: missing unit in duration \"10\"", ""),
    ("1x", "time: unknown unit \"x\" in duration \"1x\"", ""),
    ("1sec", "time: unknown unit \"sec\" in duration \"1sec\"", ""),
    ("-1s", -1_000_000_000, "-1s"), ("+1s", 1_000_000_000, "1s"),
    ("30s", 30_000_000_000, "30s"),
    ("2562047h47m16.854775807s", 9223372036854775807, "2562047h47m16.854775807s"),
    ("2562047h47m16.854775808s", "time: invalid duration \"2562047h47m16.854775808s\"", ""),
    ("9223372036854775807ns", 9223372036854775807, "2562047h47m16.854775807s"),
    ("9223372036854775808ns", "time: invalid duration \"9223372036854775808ns\"", ""),
    ("-9223372036854775808ns", -9223372036854775808, "-2562047h47m16.854775808s"),
    ("1.0000000000000000000001s", 1_000_000_000, "1s"), ("0.0000000001s", 0, "0s"),
    ("1e3s", "time: unknown unit \"e\" in duration \"1e3s\"", ""),
    (" 1s", "time: invalid duration \" 1s\"", ""),
    ("1s ", "time: unknown unit \"s \" in duration \"1s \"", ""),
    ("1_000s", "time: unknown unit \"_\" in duration \"1_000s\"", ""),
    ("1m1m", 120_000_000_000, "2m0s"),
    ("1.1.1s", "time: missing unit in duration \"1.1.1s\"", ""),
    ("1é", "time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"", ""),
    ("\x01s", "time: invalid duration \"\\x01s\"", ""),
    ("100000000000000000000s", "time: invalid duration \"100000000000000000000s\"", ""),
    ("3h", 10_800_000_000_000, "3h0m0s"), ("0.001ms", 1000, "1µs"),
    ("1.999999999999ns", 1, "1ns"),
    ("00:01", "time: unknown unit \":\" in duration \"00:01\"", ""),
]


@pytest.mark.parametrize(("text", "want", "shown"), DURATIONS, ids=[repr(d[0]) for d in DURATIONS])
def test_go_duration(text: str, want: int | str, shown: str) -> None:
    if isinstance(want, str):
        with pytest.raises(ValueError) as e:
            parse_go_duration(text)
        assert str(e.value) == want
    else:
        assert parse_go_duration(text) == want
        assert format_go_duration(want) == shown


# strconv.ParseInt(input, 10, 32) (Go 1.19).
INT32: list[tuple[str, int | str]] = [
    ("3", 3), ("0", 0), ("-1", -1), ("+7", 7), ("2147483647", 2147483647), ("07", 7),
    ("2147483648", 'strconv.ParseInt: parsing "2147483648": value out of range'),
    ("-2147483649", 'strconv.ParseInt: parsing "-2147483649": value out of range'),
    ("x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("", 'strconv.ParseInt: parsing "": invalid syntax'),
    (" 1", 'strconv.ParseInt: parsing " 1": invalid syntax'),
    ("1_0", 'strconv.ParseInt: parsing "1_0": invalid syntax'),
    ("0x10", 'strconv.ParseInt: parsing "0x10": invalid syntax'),
    ("99999999999999999999",
     'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
    ("\u0661", 'strconv.ParseInt: parsing "\u0661": invalid syntax'),   # an Arabic digit
]


@pytest.mark.parametrize(("text", "want"), INT32, ids=[repr(i[0]) for i in INT32])
def test_go_int32(text: str, want: int | str) -> None:
    if isinstance(want, str):
        with pytest.raises(ValueError) as e:
            parse_go_int32(text)
        assert str(e.value) == want
    else:
        assert parse_go_int32(text) == want


def test_go_quote() -> None:
    # fmt's %#v of a string is strconv.Quote (never backquoted)
    assert go_quote("FOO") == '"FOO"'
    assert go_quote('A"B') == '"A\\"B"'
    assert go_quote("X`Y") == '"X`Y"'
    assert go_quote("ÀB") == '"ÀB"'
    assert go_quote("\x01\t\u00a0") == '"\\x01\\t\\u00a0"'


# -- SHELL ---------------------------------------------------------------------------------

def test_shell_json() -> None:
    inst = one('SHELL ["/bin/bash", "-o", "pipefail", "-c"]')
    assert isinstance(inst, ins.Shell)
    assert inst.shell == ("/bin/bash", "-o", "pipefail", "-c")


@pytest.mark.parametrize(("text", "message"), [
    ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
    ("SHELL []", "SHELL requires at least one argument"),
    ("SHELL", "SHELL requires at least one argument"),
    ('SHELL --x ["/bin/sh"]', "unknown flag: --x"),
])
def test_shell_errors(text: str, message: str) -> None:
    assert error_of(text).startswith(message)


def test_shell_is_not_expanded() -> None:
    inst = one('SHELL ["$SH", "-c"]')
    assert isinstance(inst, ins.Shell) and inst.shell == ("$SH", "-c")


# -- STOPSIGNAL ----------------------------------------------------------------------------

def test_stopsignal_raw_and_flags_ignored() -> None:
    inst = one("STOPSIGNAL ${SIG:-SIGTERM}")
    assert isinstance(inst, ins.StopSignal) and inst.signal == "${SIG:-SIGTERM}"
    # BuildKit's parseStopSignal never parses flags: an unknown one is ignored
    inst = one("STOPSIGNAL --whatever SIGKILL")
    assert isinstance(inst, ins.StopSignal) and inst.signal == "SIGKILL"


@pytest.mark.parametrize("sig", ["SIGTERM", "sigkill", "KILL", "SigRtMin+3", "RTMAX-14", "SIGRTMAX",
                                 "9", "+9", "-9", "99", "SIGCLD", "SIGIOT", "SIGPOLL"])
def test_valid_signals(sig: str) -> None:
    check_signal(sig)


@pytest.mark.parametrize("sig", ["0", "-0", "SIGFOO", "SIG", "", "RTMIN+16", "RTMAX-15",
                                 "SIGKILL x", " 9", "9 ", "SIGINFO", "99999999999999999999"])
def test_invalid_signals(sig: str) -> None:
    with pytest.raises(DockerfileError) as e:
        check_signal(sig)
    assert e.value.message == f"invalid signal: {sig}"


# -- VOLUME --------------------------------------------------------------------------------

def test_volume_forms() -> None:
    words = one("VOLUME /a  $B\t/c")
    assert isinstance(words, ins.Volume) and words.volumes == ("/a", "$B", "/c")
    js = one('VOLUME ["/a b", " /trimmed\\t", "${X}"]')
    assert isinstance(js, ins.Volume) and js.volumes == ("/a b", "/trimmed", "${X}")


@pytest.mark.parametrize(("text", "message"), [
    ('VOLUME ["/a", ""]', "VOLUME specified can not be an empty string"),
    ('VOLUME [" "]', "VOLUME specified can not be an empty string"),
    ("VOLUME []", "VOLUME requires at least one argument"),
    ("VOLUME --x /a", "unknown flag: --x"),
])
def test_volume_errors(text: str, message: str) -> None:
    assert error_of(text).startswith(message)


# -- MAINTAINER ----------------------------------------------------------------------------

def test_maintainer() -> None:
    inst = one("MAINTAINER Jane Doe <jane@example.com>")
    assert isinstance(inst, ins.Maintainer)
    assert inst.maintainer == "Jane Doe <jane@example.com>"
    inst = one("MAINTAINER $NOT_EXPANDED")
    assert isinstance(inst, ins.Maintainer) and inst.maintainer == "$NOT_EXPANDED"


def test_maintainer_counts_arguments_before_flags() -> None:
    assert error_of("MAINTAINER --boo") == "MAINTAINER requires exactly one argument"


# -- HEALTHCHECK ---------------------------------------------------------------------------

def test_healthcheck_full() -> None:
    inst = one("HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=2m "
               "--start-interval=500ms --retries=3 CMD curl -f http://localhost/  ||  exit 1")
    assert isinstance(inst, ins.Healthcheck)
    assert inst.test == ("CMD-SHELL", "curl -f http://localhost/  ||  exit 1")
    assert inst.config() == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/  ||  exit 1"],
        "Interval": 90_000_000_000, "Timeout": 1_500_000_000, "StartPeriod": 120_000_000_000,
        "StartInterval": 500_000_000, "Retries": 3}
    assert inst.history() == (
        "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/  ||  exit 1] Interval:1m30s "
        "Timeout:1.5s StartPeriod:2m0s StartInterval:500ms Retries:3}")


def test_healthcheck_exec_form_and_case() -> None:
    inst = one('HEALTHCHECK cmd ["/bin/check", "--fast"]')
    assert isinstance(inst, ins.Healthcheck)
    assert inst.config() == {"Test": ["CMD", "/bin/check", "--fast"]}   # zero fields omitted
    inst = one("healthcheck cmd true")
    assert isinstance(inst, ins.Healthcheck) and inst.test == ("CMD-SHELL", "true")


def test_healthcheck_none() -> None:
    for text in ("HEALTHCHECK NONE", "HEALTHCHECK none",
                 # NONE never looks at flags, not even unknown ones
                 "HEALTHCHECK --interval=5s NONE", "HEALTHCHECK --bogus=1 NONE"):
        inst = one(text)
        assert isinstance(inst, ins.Healthcheck)
        assert inst.config() == {"Test": ["NONE"]}
    inst = one("HEALTHCHECK NONE")
    assert isinstance(inst, ins.Healthcheck)
    assert inst.history() == ("HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s "
                              "StartInterval:0s Retries:0}")


def test_healthcheck_zero_and_empty_mean_inherit() -> None:
    inst = one("HEALTHCHECK --interval=0 --timeout= --start-period=0s --retries= CMD true")
    assert isinstance(inst, ins.Healthcheck)
    assert inst.config() == {"Test": ["CMD-SHELL", "true"]}
    inst = one("HEALTHCHECK --retries=0 --interval=1ms CMD true")
    assert isinstance(inst, ins.Healthcheck) and inst.config()["Interval"] == 1_000_000


@pytest.mark.parametrize(("text", "message"), [
    ("HEALTHCHECK NONE true", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK TEST true", 'Unknown type "TEST" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK CMD-SHELL true", 'Unknown type "CMD-SHELL" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --interval=50ns CMD true", 'Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK --timeout=-1s CMD true", 'Interval "timeout" cannot be less than 1ms'),
    ("HEALTHCHECK --start-period=999us CMD true",
     'Interval "start-period" cannot be less than 1ms'),
    ("HEALTHCHECK --start-interval=1ns CMD true",
     'Interval "start-interval" cannot be less than 1ms'),
    ("HEALTHCHECK --interval=5 CMD true", 'time: missing unit in duration "5"'),
    ("HEALTHCHECK --interval=5 --timeout=1x CMD true", 'time: missing unit in duration "5"'),
    ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative (-1)"),
    ("HEALTHCHECK --retries=three CMD true",
     'strconv.ParseInt: parsing "three": invalid syntax'),
    ("HEALTHCHECK --retries=2147483648 CMD true",
     'strconv.ParseInt: parsing "2147483648": value out of range'),
    ("HEALTHCHECK --intervall=5s CMD true", "unknown flag: --intervall"),
    ("HEALTHCHECK --interval=5s --interval=6s CMD true",
     "duplicate flag specified: --interval"),
    ("HEALTHCHECK --interval CMD true", "missing a value on flag: --interval"),
    # flags are checked before the type
    ("HEALTHCHECK --nope=1 FOO", "unknown flag: --nope"),
])
def test_healthcheck_errors(text: str, message: str) -> None:
    assert error_of(text).startswith(message)


def test_healthcheck_unknown_flag_suggests() -> None:
    with pytest.raises(DockerfileError) as e:
        one("HEALTHCHECK --intervall=5s CMD true")
    assert e.value.hint == "did you mean --interval?"


def test_healthcheck_flags_are_unknown_elsewhere() -> None:
    assert error_of("RUN --interval=5s true").startswith("unknown flag: --interval")


# -- ONBUILD -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expression", "trigger"), [
    ("ONBUILD RUN echo hi", "RUN echo hi", "RUN"),
    ("onbuild  copy --from=a x y", "copy --from=a x y", "COPY"),
    ("ONBUILD ADD . /app", "ADD . /app", "ADD"),
    ("ONBUILD RUN echo a \\\n  b", "RUN echo a   b", "RUN"),
    ("ONBUILD ENV A=$B", "ENV A=$B", "ENV"),
    # not checked until it fires, as in BuildKit
    ("ONBUILD FOO bar", "FOO bar", "FOO"),
])
def test_onbuild_expression(text: str, expression: str, trigger: str) -> None:
    inst = one(text)
    assert isinstance(inst, ins.Onbuild)
    assert (inst.expression, inst.trigger) == (expression, trigger)


def test_onbuild_heredoc_is_kept_in_the_expression() -> None:
    (inst,) = stage("ONBUILD RUN <<EOF\necho one\necho two\nEOF\n")
    assert isinstance(inst, ins.Onbuild)
    assert inst.expression == "RUN <<EOF\necho one\necho two\nEOF"


def test_onbuild_heredoc_given_by_the_parser() -> None:
    """A parser that keeps ONBUILD's heredocs (and appends their bodies to ``original``,
    as the ``dockerfile`` package does for COPY/RUN) gives the same expression."""
    loc = SourceLocation("Dockerfile", 2, 4, "ONBUILD COPY <<EOF /x\nhi\nEOF")
    node = Node("onbuild", (), ("<<EOF", "/x"), False, "ONBUILD COPY <<EOF /x\nhi\nEOF\n", loc,
                (Heredoc("EOF", "hi\n"),), "COPY")
    inst = typed.to_instruction(node)
    assert isinstance(inst, ins.Onbuild) and inst.expression == "COPY <<EOF /x\nhi\nEOF"


@pytest.mark.parametrize(("text", "message"), [
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD onbuild run x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM busybox", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD from busybox", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD --x RUN true", "unknown flag: --x"),
])
def test_onbuild_errors(text: str, message: str) -> None:
    assert error_of(text).startswith(message)


FROM_LINE = SourceLocation("Dockerfile", 7, 7, "FROM parent")


def test_trigger_parses_as_its_instruction() -> None:
    inst = typed.parse_trigger("COPY --chown=1:2 a b /dest/", FROM_LINE)
    assert isinstance(inst, ins.Copy)
    assert (inst.sources, inst.dest, inst.chown) == (("a", "b"), "/dest/", "1:2")
    assert inst.location == FROM_LINE and inst.original == "ONBUILD COPY --chown=1:2 a b /dest/"
    run = typed.parse_trigger('RUN ["echo", "hi"]', FROM_LINE)
    assert isinstance(run, ins.Run) and run.json and run.command == ("echo", "hi")
    again = typed.parse_trigger("ONBUILD RUN x", FROM_LINE)   # only from a hand-made config
    assert isinstance(again, ins.Onbuild) and again.expression == "RUN x"


@pytest.mark.parametrize(("expression", "message"), [
    ("RUN a\nRUN b", "onbuild trigger should be a single expression"),
    ("FOO bar", "unknown instruction: FOO"),
    ("FROM busybox", "FROM isn't allowed as an ONBUILD trigger"),
    ("COPY onlyone", "COPY requires at least two arguments"),
])
def test_trigger_errors_point_at_from(expression: str, message: str) -> None:
    with pytest.raises(DockerfileError) as e:
        typed.parse_trigger(expression, FROM_LINE)
    assert e.value.message.startswith(message)
    assert e.value.location == FROM_LINE
    assert "in the ONBUILD trigger" in (e.value.hint or "")


def test_a_stage_keeps_them_in_order() -> None:
    insts = stage('SHELL ["/bin/sh", "-ec"]\nSTOPSIGNAL 9\nVOLUME /v\nMAINTAINER me\n'
                  "HEALTHCHECK NONE\nONBUILD RUN true\n")
    assert [type(i).__name__ for i in insts] == [
        "Shell", "StopSignal", "Volume", "Maintainer", "Healthcheck", "Onbuild"]


# -- the config they end up in ---------------------------------------------------------------

def test_config_round_trip() -> None:
    runtime = RuntimeConfig(shell=("/bin/bash", "-c"), stop_signal="SIGQUIT",
                            volumes=("/a", "/b"), on_build=("RUN true", "COPY . /app"),
                            healthcheck={"Test": ["NONE"]})
    cfg = ImageConfig(config=runtime, author="me")
    d = cfg.to_dict()
    assert d["author"] == "me"
    assert d["config"] == {"Volumes": {"/a": {}, "/b": {}}, "StopSignal": "SIGQUIT",
                           "Shell": ["/bin/bash", "-c"], "Healthcheck": {"Test": ["NONE"]},
                           "OnBuild": ["RUN true", "COPY . /app"]}
    back = ImageConfig.from_dict(json.loads(json.dumps(d)))
    assert back.config.to_dict() == d["config"] and back.author == "me"
