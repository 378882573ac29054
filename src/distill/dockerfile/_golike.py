"""Small pieces of Go's standard library that BuildKit's Dockerfile parser leans on.

The parser must agree with BuildKit byte for byte, so the Go behaviours it depends on are
written out here: ``unicode.IsSpace``, ``strings.TrimSpace``, ``strings.ToLower``,
``strconv.Quote`` and ``encoding/json`` decoding into ``any``.

Text is handled as ``str``; bytes that are not valid UTF-8 are carried as the
``surrogateescape`` code points U+DC80..U+DCFF, so a Go ``string`` holding invalid UTF-8
round-trips (:func:`to_bytes` / :func:`from_bytes`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

# Go's unicode.IsSpace: the Unicode White_Space property (Python's str.isspace() also
# accepts U+001C..U+001F, so it cannot be used).
SPACES = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
         "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACE_SET = frozenset(SPACES)
# unicode.IsSpace(rune(b)) for a single byte b, as BuildKit's byte loops call it.
SPACE_BYTES = frozenset(b"\t\n\v\f\r \x85\xa0")
_SURROGATES = re.compile("[\ud800-\udfff]")
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def is_space(ch: str) -> bool:
    return ch in _SPACE_SET


def trim_space(s: str) -> str:
    """``strings.TrimSpace``."""
    return s.strip(SPACES)


def trim_left_space(s: str) -> str:
    """``strings.TrimLeftFunc(s, unicode.IsSpace)``."""
    return s.lstrip(SPACES)


def lower(s: str) -> str:
    """``strings.ToLower``: simple (one-to-one) case mapping, rune by rune."""
    if s.isascii():
        return s.lower()
    return "".join(_lower_rune(ch) for ch in s)


def _lower_rune(ch: str) -> str:
    low = ch.lower()
    if len(low) == 1:
        return low
    return "i" if ch == "\u0130" else ch  # U+0130 is the only rune with a longer mapping


def to_bytes(s: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no byte string can have produced
        return s.encode("utf-8", "surrogatepass")


def from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(to_bytes(s))


def invalid_to_replacement(s: str) -> str:
    """What Go's rune decoding makes of invalid UTF-8: one U+FFFD per bad byte."""
    return _SURROGATES.sub("\ufffd", s)


def quote(s: str) -> str:
    """``strconv.Quote``."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def quote_list(items: tuple[str, ...] | list[str]) -> str:
    """``fmt.Sprintf("%q", []string{...})``."""
    return "[" + " ".join(quote(item) for item in items) + "]"


class JSONError(ValueError):
    """The text is not what ``json.Unmarshal`` into ``any`` accepts."""


_WS = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(
    r'[ \t\n\r]*(?:'
    r'(?P<s>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")'
    r'|(?P<n>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)'
    r'|(?P<l>true|false|null)'
    r'|(?P<p>[\[\]{},:]))'
)
_LITERALS: dict[str, object] = {"true": True, "false": False, "null": None}
_MAX_DEPTH = 10000  # encoding/json's maxNestingDepth


def json_decode(text: str) -> object:
    """``json.Unmarshal(text, &v)`` with ``v any``: strict JSON, nesting up to 10000 deep,
    numbers that overflow float64 are errors, bad surrogates and invalid UTF-8 inside
    strings become U+FFFD. Iterative, so deep nesting cannot exhaust the Python stack."""
    pos, end = 0, len(text)
    stack: list[list[object] | dict[str, object]] = []
    keys: list[str] = []
    # what may come next: "value", "first" ('[' just opened), "key", "firstkey",
    # "colon", "more" (',' or a closer), "end"
    state = "value"
    result: object = None
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            blank = _WS.match(text, pos)
            if state == "end" and blank is not None and blank.end() == end:
                return result
            raise JSONError("invalid JSON")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind or 0)
        if state == "colon":
            if tok != ":":
                raise JSONError("expected ':'")
            state = "value"
            continue
        if state in ("key", "firstkey"):
            if kind == "s":
                keys.append(_string(tok))
                state = "colon"
                continue
            if not (tok == "}" and state == "firstkey"):
                raise JSONError("expected a key")
        elif state == "more":
            if tok == ",":
                state = "key" if isinstance(stack[-1], dict) else "value"
                continue
            if tok != ("}" if isinstance(stack[-1], dict) else "]"):
                raise JSONError("expected ',' or a closing bracket")
        elif state == "end":
            raise JSONError("extra data after the JSON value")
        elif tok == "]" and state != "first" or tok in ("}", ",", ":"):
            raise JSONError("expected a value")
        value: object
        if tok in ("]", "}"):
            value = stack.pop()
        elif tok in ("[", "{"):
            stack.append([] if tok == "[" else {})
            if len(stack) > _MAX_DEPTH:
                raise JSONError("exceeded max depth")
            state = "first" if tok == "[" else "firstkey"
            continue
        elif kind == "s":
            value = _string(tok)
        elif kind == "n":
            value = _number(tok)
        else:
            value = _LITERALS[tok]
        if not stack:
            result, state = value, "end"
            continue
        parent = stack[-1]
        if isinstance(parent, dict):
            parent[keys.pop()] = value
        else:
            parent.append(value)
        state = "more"


def _string(token: str) -> str:
    return invalid_to_replacement(json.loads(token))


def _number(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise JSONError(f"cannot unmarshal number {token} into a float64")
    return value


#: the byte order mark, which BuildKit drops from the start of a Dockerfile
BOM = "\ufeff"

#: bufio.MaxScanTokenSize: a line, with its "\n", may be this long
MAX_LINE_BYTES = 65536


class Scanner:
    """Physical lines with their endings, like Go's ``bufio.Scanner`` with BuildKit's
    ``scanLines``: a line longer than the scanner's 64 KiB buffer stops the scan."""

    def __init__(self, text: str) -> None:
        pieces = text.split("\n")
        self._lines = [p + "\n" for p in pieces[:-1]]
        if pieces[-1]:
            self._lines.append(pieces[-1])
        self._next = 0
        self.too_long = False

    def scan(self) -> str | None:
        if self.too_long or self._next >= len(self._lines):
            return None
        line = self._lines[self._next]
        limit = MAX_LINE_BYTES if line.endswith("\n") else MAX_LINE_BYTES - 1
        if len(line) * 4 > limit and utf8_len(line) > limit:
            self.too_long = True
            return None
        self._next += 1
        return line

    def lines(self, drop_newline: bool) -> Iterable[str]:
        while (line := self.scan()) is not None:
            if drop_newline:  # bufio.ScanLines: without the "\n" and one "\r" before it
                line = line.removesuffix("\n").removesuffix("\r")
            yield line
