"""Dockerfile text -> raw instruction nodes, with line ranges.

The parsing itself is :mod:`distill.dockerfile.parser`, written to BuildKit's
parser semantics and checked against BuildKit's own test corpus; this module
keeps the small ``Node`` shape the rest of the frontend consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import DockerfileError, SourceLocation


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    file_descriptor: int = 0


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


def parse(text: str, path: str = "Dockerfile") -> list[Node]:
    """Parse Dockerfile ``text``; errors name ``path`` and the offending lines."""
    from distill.dockerfile.parser import parse_dockerfile

    nodes = [n for n in parse_dockerfile(text, path).nodes if n.cmd]
    if not nodes:
        raise DockerfileError(f"{path}: file with no instructions")
    return nodes
