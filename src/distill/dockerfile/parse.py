"""Dockerfile text -> raw instruction nodes, with line ranges.

The parsing itself is :mod:`distill.dockerfile.parser`, written to BuildKit's
parser semantics and checked against BuildKit's own test corpus; this module
keeps the small ``Node`` shape the rest of the frontend consumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from distill.errors import DockerfileError, SourceLocation


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    file_descriptor: int = 0
    # (left out of ==, so a heredoc still equals its (name, content, fd) value)
    #: unquoted delimiter: COPY expands the body with the build env
    expand: bool = field(default=True, compare=False)
    #: ``<<-``: leading tabs are stripped (by COPY; for RUN, by the shell or the step)
    chomp: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Node:
    """One instruction as the parser saw it: no expansion, no flag checking."""

    cmd: str                    # lower-cased instruction keyword
    flags: tuple[str, ...]      # raw "--name=value" words
    args: tuple[str, ...]       # raw arguments
    json: bool                  # exec (JSON array) form
    original: str
    location: SourceLocation
    heredocs: tuple[Heredoc, ...] = ()
    sub_cmd: str | None = None


def location_of(path: str, lines: list[str], start: int, end: int) -> SourceLocation:
    text = "\n".join(lines[start - 1:end])
    return SourceLocation(path, start, end, text)


# The frontends built into distill: BuildKit's own Dockerfile frontend, by the names
# ``# syntax=`` uses for it (docker/dockerfile:1, 1.x, 1.x.y, with -labs, or a digest).
_BUILTIN_FRONTEND = re.compile(
    r"(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?docker/dockerfile"
    r"(?::1(?:\.[0-9]+){0,2}(?:-labs)?)?(?:@sha256:[0-9a-f]{64})?\Z")


def check_syntax(text: str, path: str = "Dockerfile") -> None:
    """``# syntax=`` may only name the Dockerfile frontend distill is (BuildKit's v1
    syntax); another frontend image would run code distill does not have."""
    from distill.dockerfile.parser import detect_syntax

    found = detect_syntax(text)
    if found is None or _BUILTIN_FRONTEND.match(found.ref):
        return
    lines = text.removeprefix("\ufeff").split("\n")
    line = max(found.line, 1)
    raise DockerfileError(
        f"distill does not run external frontends: {found.ref}",
        hint="use # syntax=docker/dockerfile:1 (or remove the directive) to build with "
             "distill's own Dockerfile frontend",
        location=location_of(path, lines, line, line))


def parse(text: str, path: str = "Dockerfile") -> list[Node]:
    """Parse Dockerfile ``text``; errors name ``path`` and the offending lines."""
    from distill.dockerfile.parser import parse_dockerfile

    nodes = [n for n in parse_dockerfile(text, path).nodes if n.cmd]
    if not nodes:
        raise DockerfileError(f"{path}: file with no instructions")
    check_syntax(text, path)
    return nodes
