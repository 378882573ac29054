"""Fuzzing the frontend: any text either plans or fails with a DistillError, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.dockerfile.parser import parse
from distill.dockerfile.typed import build_dockerfile
from distill.errors import DistillError
from distill.plan.plan import make_plan

KEYWORDS = ["FROM", "RUN", "COPY", "ADD", "ARG", "ENV", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
            "LABEL", "EXPOSE", "SHELL", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD",
            "MAINTAINER", "FORM", "from", "Run"]
WORDS = st.sampled_from(["busybox", "scratch", "AS", "as", "build", "0", "1", "$X", "${X:-y}",
                         "${X?err}", "--from=build", "--from=0", "--chown=1:1", "--chmod=755",
                         "--platform=linux/amd64", "--mount=type=cache,target=/c", "a=b",
                         "\"q u\"", "'s'", "[\"a\", \"b\"]", "[1]", "\\", "/dst/", ".", "*.txt",
                         "<<EOF", "-", "8080/tcp", "1-3/udp", "${", "$", "`"])


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.text(max_size=40)))
        elif kind == 1:
            lines.append("# " + draw(st.sampled_from(["syntax=docker/dockerfile:1", "escape=`",
                                                     "check=skip=all", "comment"])))
        else:
            words = draw(st.lists(WORDS, max_size=5))
            lines.append(" ".join([draw(st.sampled_from(KEYWORDS)), *words]))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\\\n"]))


def _frontend(text: str, target: str | None = None) -> None:
    try:
        df = build_dockerfile(parse(text, "Dockerfile"))
        make_plan(df, target=target, build_args={"X": "1"})
    except DistillError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfiles(), st.sampled_from([None, "build", "0"]))
def test_grammar_shaped_input_never_crashes(text: str, target: str | None) -> None:
    _frontend(text, target)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    _frontend(text)
