"""Parser directives (``# syntax=``, ``# escape=``, ``# check=``) as BuildKit's
``directives.go`` reads them, and the check that ``# syntax=`` names no frontend but
distill's own."""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.dockerfile import _golike as go
from distill.errors import DockerfileError, SourceLocation

_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_DIRECTIVE_NAMES = frozenset({"syntax", "escape", "check"})


@dataclass(frozen=True)
class Directive:
    name: str   # lower-cased: syntax, escape or check
    value: str
    line: int   # 1-based


class DirectiveParser:
    """Reads ``<comment> name=value`` directives line by line until the first line that
    is not one (BuildKit's ``DirectiveParser``); a repeated directive is an error."""

    def __init__(self, comment: str = "#", line: int = 0) -> None:
        self.comment = comment
        self.line = line
        self.done = False
        self._seen: set[str] = set()

    def parse_line(self, line: str) -> Directive | None:
        self.line += 1
        if self.done:
            return None
        if not line.startswith(self.comment):
            self.done = True
            return None
        match = _DIRECTIVE.match(go.trim_left_space(line[len(self.comment):]))
        name = match[1].lower() if match else ""
        if match is None or name not in _DIRECTIVE_NAMES:
            self.done = True
            return None
        if name in self._seen:
            raise DockerfileError(f"only one {name} parser directive can be used")
        self._seen.add(name)
        return Directive(name, match[2], self.line)

    def parse_all(self, text: str) -> list[Directive]:
        found, error = self._parse_all(text)
        if error is not None:
            raise error
        return found

    def _parse_all(self, text: str) -> tuple[list[Directive], DockerfileError | None]:
        found: list[Directive] = []
        for line in go.Scanner(text).lines(drop_newline=True):
            if self.done:
                break
            try:
                directive = self.parse_line(line)
            except DockerfileError as e:
                return found, e
            if directive is not None:
                found.append(directive)
        return found, None


@dataclass(frozen=True)
class DirectiveMatch:
    ref: str      # the value up to its first space
    cmdline: str  # the whole value
    line: int     # 1-based; 0 (or 1 after a shebang) for the JSON form


def detect_syntax(text: str) -> DirectiveMatch | None:
    """The ``syntax`` directive as BuildKit's ``DetectSyntax`` finds it: after a BOM and
    a ``#!`` line, as ``# syntax=``, ``// syntax=`` or a JSON object's ``"syntax"``."""
    return _find_directive("syntax", text, any_format=True)


def parse_directive(key: str, text: str) -> DirectiveMatch | None:
    """BuildKit's ``ParseDirective(key, ...)``: like :func:`detect_syntax`, ``#`` only."""
    return _find_directive(key, text, any_format=False)


def _find_directive(key: str, text: str, any_format: bool) -> DirectiveMatch | None:
    text = text.removeprefix(go.BOM)
    first, _, rest = text.partition("\n")
    line = 0
    if first.startswith("#!"):
        text, line = rest, 1
    for comment in ("#", "//") if any_format else ("#",):
        found, _ = DirectiveParser(comment, line)._parse_all(text)
        for directive in found:
            if directive.name == key:
                ref = directive.value.split(" ", 1)[0]
                return DirectiveMatch(ref, directive.value, directive.line)
    if any_format:
        try:
            decoded = go.json_decode(text)
        except go.JSONError:
            return None
        value = decoded.get(key) if isinstance(decoded, dict) else None
        if isinstance(value, str):
            return DirectiveMatch(value, value, line)
    return None


# The frontends built into distill: BuildKit's own Dockerfile frontend, by the names
# ``# syntax=`` uses for it (docker/dockerfile:1, 1.x, 1.x.y, with -labs, or a digest).
_BUILTIN_FRONTEND = re.compile(
    r"(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?docker/dockerfile"
    r"(?::1(?:\.[0-9]+){0,2}(?:-labs)?)?(?:@sha256:[0-9a-f]{64})?\Z")


def check_syntax(text: str, path: str = "Dockerfile") -> None:
    """``# syntax=`` may only name the Dockerfile frontend distill is (BuildKit's v1
    syntax); another frontend image would run code distill does not have."""
    found = detect_syntax(text)
    if found is None or _BUILTIN_FRONTEND.match(found.ref):
        return
    lines = text.removeprefix(go.BOM).split("\n")
    line = max(found.line, 1)
    raise DockerfileError(
        f"distill does not run external frontends: {found.ref}",
        hint="use # syntax=docker/dockerfile:1 (or remove the directive) to build with "
             "distill's own Dockerfile frontend",
        location=SourceLocation(path, line, line, lines[line - 1] if line <= len(lines) else ""))
