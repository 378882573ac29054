"""One logical Dockerfile line -> one :class:`SyntaxNode`, as BuildKit's
``frontend/dockerfile/parser`` (``split_command.go``, ``line_parsers.go``) builds it.

Each instruction keyword has its own argument parser; unknown keywords keep one empty
argument (BuildKit's ``parseIgnore``). Nothing here expands variables or removes quotes,
except in ``--flags``, which BuildKit unquotes while splitting them off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from distill.dockerfile import _golike as go
from distill.errors import DockerfileError

NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"
_WHITESPACE = re.compile("[\t\v\f\r ]+")  # BuildKit's reWhitespace: ASCII blanks only
_QUOTES = ("'", '"')


@dataclass(frozen=True)
class Heredoc:
    """A heredoc as BuildKit's parser records it. ``content`` is the raw body (every line
    with its line ending; leading tabs are kept even when ``chomp``)."""

    name: str
    content: str = ""
    file_descriptor: int = 0
    expand: bool = True
    chomp: bool = False


@dataclass(frozen=True)
class SyntaxNode:
    """BuildKit's ``parser.Node`` for one instruction.

    ``value`` is the keyword as written; ``args`` the values of the ``Next`` chain
    (ENV/LABEL keep BuildKit's ``name, value, separator`` triples); ``child`` is the
    instruction ONBUILD wraps (then ``args`` is empty).
    """

    value: str
    flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    child: SyntaxNode | None = None
    json: bool = False
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def keyword(self) -> str:
        return go.lower(self.value)

    def dump(self) -> str:
        """BuildKit's ``Node.Dump()`` for this instruction (without the parentheses).
        Iterative: ``ONBUILD ONBUILD ...`` may nest thousands deep."""
        chain: list[SyntaxNode] = []
        link: SyntaxNode | None = self
        while link is not None:
            chain.append(link)
            link = link.child
        text = ""
        for node in reversed(chain):
            parts = [go.lower(node.value)]
            if node.flags:
                parts.append(" " + go.quote_list(node.flags))
            parts.extend(" " + go.quote(arg) for arg in node.args)
            if node.child is not None:
                parts.append(f" ({text})")
            text = go.trim_space("".join(parts))
        return text


@dataclass(frozen=True)
class _Args:
    values: tuple[str, ...] = ()
    child: SyntaxNode | None = None
    json: bool = False


_NONE = _Args()
LineParser = Callable[[str, str], _Args]


def new_node_from_line(line: str, escape: str) -> SyntaxNode:
    """Split ``line`` into keyword, flags and arguments and parse the arguments the way
    the keyword wants them. Raises :class:`DockerfileError` (without a location).

    ONBUILD wraps the instruction in its arguments; the chain is unrolled here rather
    than by recursion, since ``ONBUILD ONBUILD ...`` may nest thousands deep."""
    wrappers: list[tuple[str, tuple[str, ...], str]] = []
    while True:
        cmd, flags, rest = split_command(line, escape)
        if go.lower(cmd) != "onbuild" or not rest:
            break
        wrappers.append((cmd, tuple(flags), line))
        line = rest
    parsed = _DISPATCH.get(go.lower(cmd), _parse_ignore)(rest, escape)
    node = SyntaxNode(cmd, tuple(flags), parsed.values, None, parsed.json, line)
    for cmd, flags_, original in reversed(wrappers):
        node = SyntaxNode(cmd, flags_, (), node, False, original)
    return node


def split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    """The keyword, the leading ``--flags`` (unquoted) and the trimmed rest."""
    cmdline = _WHITESPACE.split(go.trim_space(line), maxsplit=1)
    flags: list[str] = []
    rest = ""
    if len(cmdline) == 2:
        rest, flags = extract_builder_flags(cmdline[1], escape)
    return cmdline[0], flags, go.trim_space(rest)


def extract_builder_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Split leading ``--flag`` words off ``line``; returns (rest, flags).

    Like BuildKit this walks *bytes*: a byte is a space if ``unicode.IsSpace`` says so of
    it as a rune (so 0x85 and 0xA0 are), and each kept byte is appended as the rune of
    that value (``--from=é`` becomes ``--from=Ã©``)."""
    data = go.to_bytes(line)
    n = len(data)
    esc = ord(escape)
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = blank_ok = False
    quote = 0
    pos = 0
    while pos < n:
        ch = data[pos]
        if not in_word and not in_quote:
            if ch in go.SPACE_BYTES:
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == n or data[pos + 1] != 0x2D:  # not "--"
                return go.from_bytes(data[pos:]), words
            in_word = True
        if in_quote:
            if ch == quote:
                in_quote, in_word = False, True
                pos += 1
                continue
            if ch == esc:
                if pos + 1 == n:  # an escape at the very end is dropped
                    in_quote, in_word = False, True
                    pos += 1
                    continue
                pos += 1
                ch = data[pos]
            word.append(chr(ch))
            pos += 1
            continue
        if ch in go.SPACE_BYTES:
            text = "".join(word)
            in_word = False
            if text == "--":
                return go.from_bytes(data[pos:]), words
            if blank_ok or text:
                words.append(text)
            word.clear()
            blank_ok = False
            pos += 1
            continue
        if ch in (0x22, 0x27):
            quote, blank_ok, in_quote, in_word = ch, True, True, False
            pos += 1
            continue
        if ch == esc:
            if pos + 1 == n:
                pos += 1
                continue
            pos += 1
            ch = data[pos]
        word.append(chr(ch))
        pos += 1
    text = "".join(word)
    if (in_word or in_quote) and text != "--" and (blank_ok or text):
        words.append(text)
    return "", words


def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """Split at unicode whitespace, keeping quotes and escape characters in the words
    (BuildKit's ``parseWords``, used for ENV, LABEL and ARG)."""
    rest = go.invalid_to_replacement(rest)
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = blank_ok = False
    quote = ""
    pos, n = 0, len(rest)
    while pos < n:
        ch = rest[pos]
        if not in_word and not in_quote:
            if go.is_space(ch):
                pos += 1
                continue
            in_word = True
        if in_word:
            if go.is_space(ch):
                in_word = False
                if blank_ok or word:
                    words.append("".join(word))
                word.clear()
                blank_ok = False
                pos += 1
                continue
            if ch in _QUOTES:
                quote, blank_ok, in_quote, in_word = ch, True, True, False
            elif ch == escape:
                if pos + 1 == n:  # an escape at the very end is dropped
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        # In a quote: the same escape rule as in a word above, except that the quote
        # ends at the last character; kept as two branches as BuildKit's parseWords has
        # them, so the two stay comparable line by line.
        if ch == quote:
            in_quote, in_word = False, True
        elif ch == escape and quote != "'":
            if pos + 1 == n:
                in_quote, in_word = False, True
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if (in_word or in_quote) and (blank_ok or word):
        words.append("".join(word))
    return words


def parse_name_val(rest: str, key: str, escape: str = "\\") -> tuple[str, ...]:
    """ENV/LABEL: ``name value`` (legacy) or ``name=value ...``, as flat
    ``(name, value, separator, ...)`` triples; the separator is ``""`` or ``"="``."""
    words = parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{key} must have two arguments")
        return (parts[0], parts[1], "")
    values: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in {go.quote(word)}. "
                                  "Must be of the form: name=value")
        name, _, value = word.partition("=")
        values += (name, value, "=")
    return tuple(values)


class NotJSONArray(ValueError):
    """The text is not a JSON array: the instruction falls back to its shell form."""


def parse_json(rest: str) -> tuple[str, ...]:
    """An exec-form argument list. Raises :class:`DockerfileError` for a JSON array with a
    non-string element, and :class:`NotJSONArray` for anything else that is not one."""
    rest = go.trim_left_space(rest)
    if not rest.startswith("["):
        raise NotJSONArray("not a JSON array")
    try:
        decoded = go.json_decode(rest)
    except go.JSONError as e:
        raise NotJSONArray(str(e)) from None
    if not isinstance(decoded, list):  # cannot happen: the text starts with "["
        raise NotJSONArray("not a JSON array")
    if not all(isinstance(item, str) for item in decoded):
        raise DockerfileError(NOT_STRING_ARRAY)
    return tuple(decoded)


def _json_or(rest: str) -> _Args | None:
    try:
        return _Args(parse_json(rest), json=True)
    except NotJSONArray:
        return None


def _parse_ignore(rest: str, escape: str) -> _Args:
    return _Args(("",))


def _parse_sub_command(rest: str, escape: str) -> _Args:
    """ONBUILD with nothing to wrap (:func:`new_node_from_line` handles the rest)."""
    return _NONE


def _parse_env(rest: str, escape: str) -> _Args:
    return _Args(parse_name_val(rest, "ENV", escape))


def _parse_label(rest: str, escape: str) -> _Args:
    return _Args(parse_name_val(rest, "LABEL", escape))


def _parse_name_or_name_val(rest: str, escape: str) -> _Args:
    return _Args(tuple(parse_words(rest, escape)))


def _parse_strings_whitespace_delimited(rest: str, escape: str) -> _Args:
    if not rest:
        return _NONE
    return _Args(tuple(_WHITESPACE.split(rest)))


def _parse_string(rest: str, escape: str) -> _Args:
    return _Args((rest,)) if rest else _NONE


def _parse_maybe_json(rest: str, escape: str) -> _Args:
    if not rest:
        return _NONE
    return _json_or(rest) or _Args((rest,))


def _parse_maybe_json_to_list(rest: str, escape: str) -> _Args:
    return _json_or(rest) or _parse_strings_whitespace_delimited(rest, escape)


def _parse_health_config(rest: str, escape: str) -> _Args:
    """``HEALTHCHECK [type] [command]``; like BuildKit, the type ends at the first byte
    that ``unicode.IsSpace`` accepts."""
    data = go.to_bytes(rest)
    sep = 0
    while sep < len(data) and data[sep] not in go.SPACE_BYTES:
        sep += 1
    after = sep
    while after < len(data) and data[after] in go.SPACE_BYTES:
        after += 1
    if sep == 0:
        return _NONE
    command = _parse_maybe_json(go.from_bytes(data[after:]), escape)
    return _Args((go.from_bytes(data[:sep]), *command.values), json=command.json)


_DISPATCH: dict[str, LineParser] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_whitespace_delimited,
    "from": _parse_strings_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}
