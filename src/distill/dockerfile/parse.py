"""Dockerfile text -> raw instruction nodes, with line ranges, via BuildKit's own parser.

The PyPI package ``dockerfile`` compiles moby/buildkit's parser; this module only
adapts its output and turns its errors into diagnostics that point at a line.
"""

from __future__ import annotations

from dataclasses import dataclass

import dockerfile as _bk

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
    """Parse Dockerfile ``text``; errors name ``path`` and, where found, the line."""
    lines = text.split("\n")
    try:
        commands = _bk.parse_string(text)
    except _bk.GoParseError as e:
        location = _find_error_line(text, str(e), path)
        message = str(e) if location is not None else f"{path}: {e}"
        raise DockerfileError(message, location=location) from None
    nodes = []
    for c in commands:
        if not c.cmd:  # a bare line continuation: nothing to run
            continue
        nodes.append(Node(
            cmd=c.cmd.lower(),
            flags=tuple(c.flags),
            args=tuple(c.value),
            json=bool(c.json),
            original=c.original,
            location=location_of(path, lines, c.start_line, c.end_line),
            heredocs=tuple(Heredoc(h.name, h.content, h.file_descriptor) for h in c.heredocs),
            sub_cmd=c.sub_cmd,
        ))
    if not nodes:
        raise DockerfileError(f"{path}: file with no instructions")
    return nodes


def _find_error_line(text: str, message: str, path: str) -> SourceLocation | None:
    """The parser's errors carry no line: find the shortest failing prefix."""
    lines = text.split("\n")
    if message.startswith("file with no instructions"):
        return None
    for n in range(1, len(lines) + 1):
        try:
            _bk.parse_string("\n".join(lines[:n]) + "\n")
        except _bk.GoParseError as e:
            if str(e) == message:
                return location_of(path, lines, n, n)
    return None
