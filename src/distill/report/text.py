"""Hostile text made safe to show: a terminal, an HTML page or a JSON document never
obeys or chokes on what an image or a Dockerfile wrote.

Shown as escapes rather than passed on: C0 and C1 control characters (escape sequences, a
carriage return that redraws a line, a newline that forges one), bidirectional marks and
overrides (they make a path read as another), and lone surrogates (the bytes of a name
that is not UTF-8, kept by ``surrogateescape``: written as ``\\xNN``, since no UTF-8
encoder takes them)."""

from __future__ import annotations

import re
from typing import Any

_BIDI_AND_SURROGATES = "\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
#: in a single line (a name, a path, an instruction): every control character
_IN_A_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SURROGATES}]")
#: in text of several lines: tab and newline kept
_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_SURROGATES}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:            # a byte kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, lines: bool = False) -> str:
    """``text`` with what must not be obeyed written as ``\\xNN`` / ``\\uNNNN``;
    ``lines``: tabs and newlines are kept (text of several lines)."""
    return (_IN_TEXT if lines else _IN_A_LINE).sub(_escape, text)


def visible_json(value: Any) -> Any:
    """A JSON-able value with every string made visible (keys too): a document any JSON
    reader takes, with a name's undecodable bytes shown as ``\\xNN`` as in the report."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(str(k)): visible_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [visible_json(v) for v in value]
    return value
