"""Dockerfile text -> instructions, the way BuildKit's ``frontend/dockerfile/parser`` does it.

A Python reading of moby/buildkit's parser (``parser.go``, ``directives.go``,
``line_parsers.go``, ``split_command.go``): logical lines are joined at the escape
character, parser directives (``# escape=``, ``# syntax=``, ``# check=``) are read from
the top of the file, each instruction's arguments are parsed by its keyword's rules, and
heredoc bodies are collected for RUN, COPY and ADD. Nothing is expanded here.

:func:`parse_dockerfile` returns a :class:`ParseResult`: BuildKit's AST
(``instructions``, which :func:`dump` prints in BuildKit's golden-file format) and the
same instructions as :class:`Node` values (``nodes``), shaped like the ``dockerfile``
package's output (ENV/LABEL as name/value pairs, ONBUILD as the wrapped instruction's
arguments), which :func:`parse` hands to the typed layer (:mod:`distill.dockerfile.typed`). Errors are
:class:`DockerfileError` with the line(s) of the offending instruction. Parser
directives are read by :mod:`distill.dockerfile.directives`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from distill.dockerfile import _golike as go
from distill.dockerfile._golike import BOM, MAX_LINE_BYTES, Scanner
from distill.dockerfile._lineparsers import (
    NOT_STRING_ARRAY,
    Heredoc,
    NotJSONArray,
    SyntaxNode,
    new_node_from_line,
    parse_json,
    parse_name_val,
    parse_words,
    split_command,
)
from distill.dockerfile.directives import (
    DirectiveParser,
    check_syntax,
    detect_syntax,
    parse_directive,
)
from distill.dockerfile.shell import Lexer
from distill.errors import DockerfileError, ShellExpansionError, SourceLocation

__all__ = [
    "NOT_STRING_ARRAY",
    "Heredoc",
    "Node",
    "NotJSONArray",
    "ParseResult",
    "ParseWarning",
    "SyntaxNode",
    "chomp_heredoc_content",
    "dump",
    "heredocs_from_line",
    "parse",
    "parse_dockerfile",
    "parse_heredoc",
    "parse_json",
    "parse_name_val",
    "parse_words",
    "split_command",
]

LINE_TOO_LONG = f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES - 1}"
EMPTY_CONTINUATION_DETAIL = "Empty continuation lines will become errors in a future release"
EMPTY_CONTINUATION_URL = "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"
DEFAULT_ESCAPE = "\\"
_HEREDOC = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})
_MAX_UINT64 = 2**64 - 1
_HEREDOC_LEXER = Lexer("\\", skip_unset_env=True)
_HEREDOC_RAW_LEXER = Lexer("\\", raw_quotes=True, skip_unset_env=True)
_LINE_LEXER = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)


@dataclass(frozen=True)
class Node:
    """One instruction as the typed layer receives it: no expansion, no flag checking."""

    cmd: str                    # lower-cased instruction keyword
    flags: tuple[str, ...]      # raw "--name=value" words
    args: tuple[str, ...]       # raw arguments
    json: bool                  # exec (JSON array) form
    original: str
    location: SourceLocation
    heredocs: tuple[Heredoc, ...] = ()
    sub_cmd: str | None = None


def parse(text: str, path: str = "Dockerfile") -> list[Node]:
    """Parse Dockerfile ``text``; errors name ``path`` and the offending lines."""
    nodes = [n for n in parse_dockerfile(text, path).nodes if n.cmd]
    if not nodes:
        raise DockerfileError(f"{path}: file with no instructions")
    check_syntax(text, path)
    return nodes


@dataclass(frozen=True)
class ParseWarning:
    """A parse-time warning (BuildKit's ``parser.Warning``); ``line`` is 1-based."""

    short: str
    detail: str
    url: str
    line: int


@dataclass
class ParseResult:
    """What :func:`parse_dockerfile` found.

    ``directives`` maps ``escape`` (as read by the parser), ``syntax`` (found like
    BuildKit's ``DetectSyntax``) and ``check`` (``ParseDirective("check")``) to their full
    values, for those present. ``warnings`` are the warnings' short texts.
    """

    instructions: list[SyntaxNode]
    nodes: list[Node]
    warnings: list[str] = field(default_factory=list)
    warning_details: list[ParseWarning] = field(default_factory=list)
    directives: dict[str, str] = field(default_factory=dict)
    escape_token: str = DEFAULT_ESCAPE

    @property
    def start_line(self) -> int:
        return self.instructions[0].start_line

    @property
    def end_line(self) -> int:
        return self.instructions[-1].end_line


def dump(ast: ParseResult | Iterable[SyntaxNode]) -> str:
    """BuildKit's ``Node.Dump()`` of the root, plus the final newline: one
    ``(keyword ["--flag" ...] "arg" ...)`` line per instruction (the golden ``result``
    files of BuildKit's parser tests)."""
    instructions = ast.instructions if isinstance(ast, ParseResult) else ast
    return "".join(f"({node.dump()})\n" for node in instructions)


# --- heredocs ----------------------------------------------------------------------------


def parse_heredoc(word: str) -> Heredoc | None:
    """BuildKit's ``ParseHeredoc``: the heredoc a single word such as ``<<-"EOF"`` or
    ``3<<EOF`` opens, or None; raises :class:`DockerfileError` on an unterminated quote."""
    match = _HEREDOC.match(word)
    if match is None or not match[3]:
        return None
    fd, chomp, rest = _parse_uint64(match[1]), match[2] == "-", match[3]
    try:
        words = _HEREDOC_LEXER.process_words(rest, {})
        if len(words) != 1:
            return None
        raw = _HEREDOC_RAW_LEXER.process_words(rest, {})
    except ShellExpansionError as e:
        raise DockerfileError(e.message) from None
    if len(raw) != 1:
        raise DockerfileError(
            f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(name, "", fd, expand=quotes == raw_quotes, chomp=chomp)


def _parse_uint64(digits: str) -> int:
    """``strconv.ParseUint(digits, 10, 0)`` as BuildKit uses it: errors ignored, so no
    digits give 0 and too many give the largest uint64."""
    significant = digits.lstrip("0")
    if len(significant) > 20:
        return _MAX_UINT64
    return min(int(significant or "0"), _MAX_UINT64)


def heredocs_from_line(line: str) -> list[Heredoc]:
    """The heredocs an instruction line opens, in order (BuildKit's ``heredocsFromLine``:
    the line is split like a shell would, quotes and escapes kept)."""
    try:
        words = _LINE_LEXER.process_words(line, {})
    except ShellExpansionError:
        return []
    return [doc for word in words if (doc := parse_heredoc(word)) is not None]


def chomp_heredoc_content(content: str) -> str:
    """Remove the leading tabs of every line (what ``<<-`` does to the body)."""
    return _LEADING_TABS.sub("", content)


# --- the parser -----------------------------------------------------------------------------


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return go.trim_left_space(line).startswith("#")


class _Parse:
    """The state of one parse: the scanner, the escape character, the lines read."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.source_lines = text.split("\n")
        self.scanner = Scanner(text)
        self.directives = DirectiveParser()
        self.found: dict[str, str] = {}
        self.escape = DEFAULT_ESCAPE
        self.continuation = _continuation_regexp(DEFAULT_ESCAPE)
        self.current = 0
        self.warnings: list[ParseWarning] = []

    def location(self, start: int, end: int) -> SourceLocation:
        text = "\n".join(self.source_lines[start - 1:end])
        return SourceLocation(self.path, start, end, text)

    def fail(self, error: DockerfileError, start: int, end: int | None = None) -> DockerfileError:
        return DockerfileError(error.message, location=self.location(start, end or start))

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing escape character; returns (line, is_end_of_line)."""
        match = self.continuation.search(line)
        if match is None:
            return line, True
        return line[:match.start()] + (match[1] or ""), False

    def directive(self, line: str) -> None:
        try:
            found = self.directives.parse_line(line)
            if found is not None and found.name == "escape":
                if found.value not in ("`", "\\"):
                    raise DockerfileError(f"invalid escape token '{found.value}' "
                                          "does not match ` or \\")
                self.escape = found.value
                self.continuation = _continuation_regexp(found.value)
        except DockerfileError as e:
            raise self.fail(e, self.current + 1) from None
        if found is not None:
            self.found[found.name] = found.value

    def run(self) -> list[SyntaxNode]:
        instructions: list[SyntaxNode] = []
        while (raw := self.scanner.scan()) is not None:
            if self.current == 0:
                raw = raw.removeprefix(BOM)
            line = go.trim_left_space(_trim_newline(raw))
            self.directive(line)
            if _is_comment(line):
                line = ""
            self.current += 1
            start = self.current
            line, end_of_line = self.trim_continuation(line)
            if end_of_line and not line:
                continue
            instructions.append(self.instruction(line, end_of_line, start))
        if not instructions:
            raise DockerfileError(f"{self.path}: file with no instructions")
        if self.scanner.too_long:
            raise self.fail(DockerfileError(LINE_TOO_LONG), self.current + 1)
        return instructions

    def instruction(self, first: str, end_of_line: bool, start: int) -> SyntaxNode:
        parts = [first]
        has_empty_line = False
        while not end_of_line and (raw := self.scanner.scan()) is not None:
            # (the directive parser is done by now: this line follows an instruction)
            self.current += 1
            if _is_comment(raw):
                continue
            line = _trim_newline(raw)
            if not go.trim_left_space(line):
                has_empty_line = True
                continue
            line, end_of_line = self.trim_continuation(line)
            parts.append(line)
        line = "".join(parts)
        if has_empty_line:
            self.warnings.append(ParseWarning(
                "Empty continuation line found in: " + line, EMPTY_CONTINUATION_DETAIL,
                EMPTY_CONTINUATION_URL, self.current))
        try:
            node = new_node_from_line(line, self.escape)
            heredocs = heredocs_from_line(line) if _takes_heredocs(node, line) else []
        except DockerfileError as e:
            raise self.fail(e, start, self.current) from None
        end = self.current
        bodies = [self.heredoc_body(doc, start, end) for doc in heredocs]
        return replace(node, start_line=start, end_line=self.current, heredocs=tuple(bodies))

    def heredoc_body(self, doc: Heredoc, start: int, end: int) -> Heredoc:
        content: list[str] = []
        while (raw := self.scanner.scan()) is not None:
            self.current += 1
            candidate = _trim_newline(raw)
            if doc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == doc.name:
                return replace(doc, content="".join(content))
            content.append(raw)
        raise self.fail(DockerfileError("unterminated heredoc"), start, end)


def _continuation_regexp(escape: str) -> re.Pattern[str]:
    """The escape character, then only blanks, at the end of a line; it continues the
    line unless it is itself escaped (BuildKit's ``lineContinuationRegex``)."""
    esc = re.escape(escape)
    return re.compile(rf"([^{esc}]){esc}[ \t]*\Z|^{esc}[ \t]*\Z")


def _takes_heredocs(node: SyntaxNode, line: str) -> bool:
    if node.child is not None and node.keyword == "onbuild":
        node = node.child
    return node.keyword in _HEREDOC_KEYWORDS and not node.json and "<<" in line


def parse_dockerfile(text: str, path: str = "Dockerfile") -> ParseResult:
    """Parse Dockerfile ``text`` like BuildKit; errors name ``path`` and the line(s)."""
    state = _Parse(text, path)
    instructions = state.run()
    directives = {"escape": state.found["escape"]} if "escape" in state.found else {}
    if (syntax := detect_syntax(text)) is not None:
        directives["syntax"] = syntax.cmdline
    if (check := parse_directive("check", text)) is not None:
        directives["check"] = check.cmdline
    nodes = [_to_node(syntax, state) for syntax in instructions]
    return ParseResult(
        instructions=instructions, nodes=nodes,
        warnings=[w.short for w in state.warnings], warning_details=state.warnings,
        directives=directives, escape_token=state.escape,
    )


def _to_node(syntax: SyntaxNode, state: _Parse) -> Node:
    """The ``dockerfile``-package view of an instruction: ONBUILD shows the wrapped
    instruction's arguments (and keeps only its own flags), ENV/LABEL drop BuildKit's
    separators, ``original`` has the heredoc bodies appended, and bytes that are not
    UTF-8 become U+FFFD. Unlike that package, ONBUILD keeps its heredocs."""
    inner = syntax.child or syntax
    args: Sequence[str] = inner.args
    if inner.child is not None:  # ONBUILD ONBUILD ...: the wrapper node's empty value
        args = ("",)
    elif inner.keyword in ("env", "label"):
        args = [arg for i, arg in enumerate(args) if i % 3 != 2]
    original = syntax.original
    if syntax.heredocs:
        original += "\n" + "".join(doc.content + doc.name + "\n" for doc in syntax.heredocs)
    return Node(
        cmd=syntax.keyword,
        flags=tuple(go.invalid_to_replacement(f) for f in syntax.flags),
        args=tuple(go.invalid_to_replacement(a) for a in args),
        json=inner.json,
        original=original,
        location=state.location(syntax.start_line, syntax.end_line),
        heredocs=tuple(syntax.heredocs),
        sub_cmd=syntax.child.value if syntax.child is not None else None,
    )
